package main

// core-reqrep: -n requests, one at a time, from the generator's connection to a
// responder connected to -sub-url (another server of a cluster: every request and
// reply crosses a route) or, without it, to the same server. Reports the latency of
// each request to its reply, p50/p90/p99, as js-pub-sync does for PubAcks.

import (
	"sort"
	"time"

	"github.com/nats-io/nats.go"
)

func coreReqRep(nc *nats.Conn) result {
	where := *subURL
	if where == "" {
		where = *url
	}
	rc, err := nats.Connect(where, nats.Name("jsgen-responder"))
	if err != nil {
		fail("connect %s: %v", where, err)
	}
	defer rc.Close()
	if _, err := rc.Subscribe(coreSubject, func(m *nats.Msg) { _ = m.Respond(m.Data) }); err != nil {
		fail("subscribe: %v", err)
	}
	if err := rc.Flush(); err != nil {
		fail("flush: %v", err)
	}
	data := payload()
	// The responder's interest may take a moment to cross the route.
	retryUntil("a responder", 10*time.Millisecond, func() error {
		_, err := nc.Request(coreSubject, data, time.Second)
		return err
	})
	r := result{Mode: *mode, Msgs: *n, Size: *size}
	lat := make([]time.Duration, *n)
	done := timed()
	for i := 0; i < *n; i++ {
		t := time.Now()
		if _, err := nc.Request(coreSubject, data, 5*time.Second); err != nil {
			fail("request %d: %v", i, err)
		}
		lat[i] = time.Since(t)
	}
	done(&r)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	r.P50, r.P90, r.P99 = pct(lat, 0.50), pct(lat, 0.90), pct(lat, 0.99)
	return r
}
