// The js-failover mode of jsgen, driven by perf/js_failover.py: an R3 stream on
// failover.> exists; jsgen kills (-9) the stream's leader (-kill-pid), publishes through
// its own server every 50 ms (an ack wait of 100 ms each) until one is acknowledged
// (failover_ms, from the kill), then makes -n synchronous publishes: their rate and,
// with -server-pid (the survivors), the servers' CPU over them.
package main

import (
	"flag"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
)

const failoverSubject = "failover.x"

var killPid = flag.Int("kill-pid", 0, "js-failover: the stream leader's pid, killed (-9) when the timing starts")

func jsFailover(nc *nats.Conn) result {
	if *killPid < 1 {
		fail("js-failover needs -kill-pid")
	}
	js := jsContext(nc)
	data := payload()
	begun := time.Now()
	if err := syscall.Kill(*killPid, syscall.SIGKILL); err != nil {
		fail("kill %d: %v", *killPid, err)
	}
	for {
		if _, err := js.Publish(failoverSubject, data, nats.AckWait(100*time.Millisecond)); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	ms := float64(time.Since(begun).Microseconds()) / 1e3
	r := result{Mode: *mode, Msgs: *n, Size: *size, FailoverMs: &ms}
	syncPublishes(js, failoverSubject, data, &r)
	return r
}
