package main

// core-route: -pubs publishers on -url, each publishing to its own subject, and as
// many subscribers on -sub-url (another server of the cluster): every message
// crosses one route. Measures route ingress on the receiving server.

import (
	"flag"
	"fmt"
	"sync"
	"sync/atomic"
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
				for k*int64(*pubs)-atomic.LoadInt64(&received) >= window {
					if time.Now().After(deadline) {
						fail("received %d of %d", atomic.LoadInt64(&received), target)
					}
					time.Sleep(20 * time.Microsecond)
				}
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
	select {
	case <-all:
	case <-time.After(time.Until(deadline)):
		fail("received %d of %d", atomic.LoadInt64(&received), target)
	}
	done(&r)
	return r
}

// waitRouteInterest publishes probes until each subscriber's interest has crossed
// the route (the probes are counted and then forgotten by the caller).
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
