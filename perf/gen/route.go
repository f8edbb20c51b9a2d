package main

// core-route: -pubs publishers on -url, each publishing to its own subject, and as
// many subscribers on -sub-url (another server of the cluster): every message
// crosses one route. Measures route ingress on the receiving server.

import (
	"flag"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

var (
	subURL = flag.String("sub-url", "", "core-route: the subscribers' server")
	pubs   = flag.Int("pubs", 4, "core-route: publishers (and subscribers), one subject each")
)

func coreRoute(_ *nats.Conn) result {
	if *subURL == "" {
		fail("core-route needs -sub-url")
	}
	per := int64(*n / *pubs)
	var received int64
	target := per * int64(*pubs)
	all := make(chan struct{})
	var subs []*nats.Conn
	for i := 0; i < *pubs; i++ {
		sc, err := nats.Connect(*subURL, nats.Name(fmt.Sprintf("jsgen-sub-%d", i)))
		if err != nil {
			fail("connect %s: %v", *subURL, err)
		}
		defer sc.Close()
		countingSub(sc, fmt.Sprintf("route.%d", i), &received, target, all)
		subs = append(subs, sc)
	}
	var pcs []*nats.Conn
	for i := 0; i < *pubs; i++ {
		pc := connect(fmt.Sprintf("jsgen-pub-%d", i))
		defer pc.Close()
		pcs = append(pcs, pc)
	}
	waitRouteInterest(pcs, subs)
	data := payload()
	window := int64(*inflight / (*size + 48))
	r := result{Mode: *mode, Msgs: int(target), Size: *size}
	deadline := time.Now().Add(*timeout)
	done := timed()
	var wg sync.WaitGroup
	for i, pc := range pcs {
		wg.Add(1)
		go func(i int, pc *nats.Conn) {
			defer wg.Done()
			subject := fmt.Sprintf("route.%d", i)
			for k := int64(0); k < per; k++ {
				// The window is shared: all publishers together stay within it.
				waitWindow(k*int64(*pubs), &received, window, target, deadline)
				if err := pc.Publish(subject, data); err != nil {
					fail("publish: %v", err)
				}
			}
			if err := pc.Flush(); err != nil {
				fail("flush: %v", err)
			}
		}(i, pc)
	}
	wg.Wait()
	awaitAll(all, &received, target, deadline)
	done(&r)
	return r
}

// waitRouteInterest publishes probes to a fresh inbox of each subscriber's connection
// until one arrives: that publisher's messages now reach that subscriber's server.
func waitRouteInterest(pcs []*nats.Conn, subs []*nats.Conn) {
	deadline := time.Now().Add(*apiWait * 4)
	for i, pc := range pcs {
		probe := subs[i].NewRespInbox()
		got, err := subs[i].SubscribeSync(probe)
		if err != nil {
			fail("subscribe: %v", err)
		}
		subs[i].Flush()
		for {
			pc.Publish(probe, nil)
			pc.Flush()
			if _, err := got.NextMsg(50 * time.Millisecond); err == nil {
				break
			}
			if time.Now().After(deadline) {
				fail("interest never crossed the route")
			}
		}
		got.Unsubscribe()
	}
}
