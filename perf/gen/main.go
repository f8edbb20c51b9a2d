// jsgen: a JetStream (and core) load generator on the official Go client (nats.go).
// Built offline against Debian's golang-github-nats-io-go-nats-dev: see build.sh.
//
// Modes (-mode):
//
//	js-pub-async  (re)create a file stream on bench.js (R1, or -replicas N), PublishAsync
//	              -n messages of -size bytes with at most -w acks outstanding, wait for
//	              every ack.
//	js-pub-sync   the same stream, -n synchronous publishes one by one; latency per publish.
//	js-pull       the stream pre-filled with -n messages (not timed, every publish acked),
//	              a durable pull consumer with explicit ack; Fetch(-batch), Ack (async)
//	              each message.
//	js-push       the stream pre-filled the same way, an ordered push consumer (as KV
//	              watchers and nats.go's ordered subscriptions use) from this connection;
//	              the rate is what it received. With -replicas N the consumer's leader is
//	              often another server than this connection's: deliveries cross a route.
//	core-pubsub   one publisher and one subscriber connection on bench.core; the rate is
//	              what the subscriber received.
//	js-failover   kill the R3 stream's leader, time until a publish is acknowledged again,
//	              then -n synchronous publishes: see failover.go.
//	scale-*       the scale cases of perf/js_scale.py (many subjects, consumers, streams,
//	              keys): see scale.go.
//
// Output: one JSON line on stdout,
// {"mode","msgs","size","secs","rate"[,"p50_us","p90_us","p99_us"][,"server_cpu_us"],"client_cpu_us"[,"replicas","stream_leader"]}
// (the scale-* modes print their own fields, see scale.go).
// With -server-pid, server_cpu_us is the server process's utime+stime over the timed
// phase only (from /proc/PID/stat); with several pids (a cluster), their sum. Errors go
// to stderr with exit status 1; a run that takes longer than -timeout exits with status 2.
//
// With -replicas N > 1 (a JetStream cluster) the stream is created with N replicas; the
// create is retried (the meta leader may not know every peer yet) and the timed phase
// starts only once the stream's info names a cluster leader, reported as stream_leader.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

const (
	streamName   = "BENCH"
	jsSubject    = "bench.js"
	consumerName = "BENCHC"
	coreSubject  = "bench.core"
)

type result struct {
	Mode        string   `json:"mode"`
	Msgs        int      `json:"msgs"`
	Size        int      `json:"size"`
	Secs        float64  `json:"secs"`
	Rate        float64  `json:"rate"`
	P50         *float64 `json:"p50_us,omitempty"`
	P90         *float64 `json:"p90_us,omitempty"`
	P99         *float64 `json:"p99_us,omitempty"`
	ServerCPUUs *float64 `json:"server_cpu_us,omitempty"`
	// The generator's own CPU over the phase: near one core per connection
	// means the client, not the server, set the rate.
	ClientCPUUs float64 `json:"client_cpu_us"`
	// With -replicas > 1: the replica count and the stream's leader (server_name) when
	// the timed phase began.
	Replicas     int    `json:"replicas,omitempty"`
	StreamLeader string `json:"stream_leader,omitempty"`
	// js-failover: from killing the stream's leader to the first acknowledged publish.
	FailoverMs *float64 `json:"failover_ms,omitempty"`
}

var (
	url       = flag.String("url", nats.DefaultURL, "server URL")
	mode      = flag.String("mode", "js-pub-async", "js-pub-async | js-pub-sync | js-pull | core-pubsub | core-fanout | core-queue | core-route | core-reqrep | js-failover | scale-subjects | scale-filter | scale-consumers | scale-streams | scale-kv")
	n         = flag.Int("n", 200000, "messages")
	size      = flag.Int("size", 128, "payload bytes")
	window    = flag.Int("w", 4000, "js-pub-async: most acks outstanding (nats.go's default window is 4000)")
	batch     = flag.Int("batch", 100, "js-pull: Fetch batch size")
	inflight  = flag.Int("inflight", 32<<20, "core-pubsub: most bytes (payload + 48 a message) published but not yet received")
	timeout   = flag.Duration("timeout", 120*time.Second, "give up (exit 2) after this long")
	apiWait   = flag.Duration("api-wait", 5*time.Second, "wait for each JetStream API answer / ack")
	showVer   = flag.Bool("version", false, "print the nats.go version and exit")
	serverPid = flag.String("server-pid", "", "PID[,PID...]: report the server's CPU time over the timed phase (from /proc/PID/stat); several pids (a cluster): their sum")
	fanSubs   = flag.Int("subs", 4, "core-fanout, core-queue: subscriber connections")
	replicas  = flag.Int("replicas", 1, "js-* modes and scale-streams: the streams' replicas (>1 needs a JetStream cluster)")
)

// serverPids is -server-pid parsed.
var serverPids []int

// streamLeader is the bench stream's cluster leader once freshStream has seen one.
var streamLeader string

// cpuTicks returns utime+stime of pid in clock ticks (USER_HZ, 100 on Linux).
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("bad /proc stat")
	}
	f := strings.Fields(s[i+2:]) // f[0] is field 3 (state); utime is field 14, stime 15
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("bad /proc stat fields")
	}
	return u + st, nil
}

// serversTicks sums cpuTicks over every -server-pid.
func serversTicks() (int64, error) {
	var sum int64
	for _, pid := range serverPids {
		t, err := cpuTicks(pid)
		if err != nil {
			return 0, err
		}
		sum += t
	}
	return sum, nil
}

// timed brackets the measured phase: start returns a stop func giving seconds and, with
// -server-pid, the server's (or servers') CPU µs over the phase.
func timed() func(r *result) {
	var t0 int64
	if len(serverPids) > 0 {
		t0, _ = serversTicks()
	}
	c0, _ := cpuTicks(os.Getpid())
	start := time.Now()
	return func(r *result) {
		r.Secs = time.Since(start).Seconds()
		if c1, err := cpuTicks(os.Getpid()); err == nil {
			r.ClientCPUUs = float64(c1-c0) * 1e6 / 100
		}
		r.Rate = float64(r.Msgs) / r.Secs
		if len(serverPids) > 0 {
			if t1, err := serversTicks(); err == nil {
				us := float64(t1-t0) * 1e6 / 100
				r.ServerCPUUs = &us
			}
		}
	}
}

func fail(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "jsgen %s: %s\n", *mode, fmt.Sprintf(format, a...))
	if strings.HasPrefix(*mode, "scale-") {
		// The scale modes still print what they measured before the failure.
		scaleRec.set("error", fmt.Sprintf("%s (phase %v)", fmt.Sprintf(format, a...), scaleRec.get("phase")))
		fmt.Println(string(scaleRec.json()))
	}
	os.Exit(1)
}

func connect(name string) *nats.Conn {
	nc, err := nats.Connect(*url, nats.Name(name), nats.Timeout(*apiWait),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			fmt.Fprintf(os.Stderr, "jsgen %s: async error: %v\n", *mode, err)
		}))
	if err != nil {
		fail("connect %s: %v", *url, err)
	}
	return nc
}

func jsContext(nc *nats.Conn) nats.JetStreamContext {
	js, err := nc.JetStream(nats.MaxWait(*apiWait), nats.PublishAsyncMaxPending(*window),
		nats.PublishAsyncErrHandler(func(_ nats.JetStream, _ *nats.Msg, err error) {
			// The first error is kept before the count shows it: fail() names it.
			firstAsyncError.CompareAndSwap(nil, err.Error())
			atomic.AddInt64(&asyncErrors, 1)
		}))
	if err != nil {
		fail("jetstream context: %v", err)
	}
	return js
}

// freshStream deletes the bench stream if present and creates a file stream with
// -replicas replicas. With more than one (a cluster), the delete and the create are
// retried until -timeout (the meta group may still be settling: no leader yet, or a
// leader that does not know every peer), and it returns only once the stream's info
// names a leader.
func freshStream(js nats.JetStreamContext) {
	if *replicas <= 1 {
		if err := js.DeleteStream(streamName); err != nil && !errors.Is(err, nats.ErrStreamNotFound) {
			fail("delete stream: %v", err)
		}
		_, err := js.AddStream(&nats.StreamConfig{
			Name: streamName, Subjects: []string{jsSubject},
			Storage: nats.FileStorage, Replicas: 1,
		})
		if err != nil {
			fail("create stream: %v", err)
		}
		return
	}
	deadline := time.Now().Add(*timeout)
	retry := func(what string, err error, tries int) {
		if time.Now().After(deadline) {
			fail("%s: still failing after %d tries: %v", what, tries, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for tries := 1; ; tries++ {
		err := js.DeleteStream(streamName)
		if err == nil || errors.Is(err, nats.ErrStreamNotFound) {
			break
		}
		retry("delete stream", err, tries)
	}
	cfg := &nats.StreamConfig{
		Name: streamName, Subjects: []string{jsSubject},
		Storage: nats.FileStorage, Replicas: *replicas,
	}
	for tries := 1; ; tries++ {
		_, err := js.AddStream(cfg)
		if err == nil {
			break
		}
		// An earlier try that timed out on our side may have created it after all.
		if errors.Is(err, nats.ErrStreamNameAlreadyInUse) {
			break
		}
		retry("create stream", err, tries)
	}
	for tries := 1; ; tries++ {
		info, err := js.StreamInfo(streamName)
		if err == nil && info.Cluster != nil && info.Cluster.Leader != "" {
			if info.Config.Replicas != *replicas {
				fail("stream has %d replicas, asked for %d", info.Config.Replicas, *replicas)
			}
			streamLeader = info.Cluster.Leader
			return
		}
		if err == nil {
			err = errors.New("no cluster leader in stream info")
		}
		retry("stream leader", err, tries)
	}
}

func payload() []byte {
	p := make([]byte, *size)
	for i := range p {
		p[i] = 'a' + byte(i%26)
	}
	return p
}

var asyncErrors int64

// firstAsyncError is the first failed publish's error text.
var firstAsyncError atomic.Value

// publishAsync publishes count messages and waits until every ack (or error) is in;
// any error fails the run.
func publishAsync(js nats.JetStreamContext, count int) {
	publishAsyncTo(js, count, func(int) string { return jsSubject }, payload())
}

// publishAsyncTo publishes count messages, the i-th on subject(i), and waits until every
// ack (or error) is in; any error fails the run.
func publishAsyncTo(js nats.JetStreamContext, count int, subject func(i int) string, data []byte) {
	for i := 0; i < count; i++ {
		// At -w outstanding, PublishAsync waits for an ack (by default 200 ms, then fails);
		// a server that fsyncs every message can take longer, so wait up to -timeout.
		if _, err := js.PublishAsync(subject(i), data, nats.StallWait(*timeout)); err != nil {
			fail("publish %d: %v", i, err)
		}
		if atomic.LoadInt64(&asyncErrors) > 0 {
			fail("%d publish errors after %d messages, the first: %v",
				atomic.LoadInt64(&asyncErrors), i+1, firstAsyncError.Load())
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(*timeout):
		fail("acks: %d of %d still pending after %v", js.PublishAsyncPending(), count, *timeout)
	}
	if e := atomic.LoadInt64(&asyncErrors); e > 0 {
		fail("%d of %d publishes failed, the first: %v", e, count, firstAsyncError.Load())
	}
}

func jsPubAsync(nc *nats.Conn) result {
	js := jsContext(nc)
	freshStream(js)
	r := result{Mode: *mode, Msgs: *n, Size: *size}
	done := timed()
	publishAsync(js, *n)
	done(&r)
	return r
}

// retryUntil calls try until it succeeds, pausing between tries; it fails the run
// once -timeout has passed.
func retryUntil(what string, pause time.Duration, try func() error) {
	deadline := time.Now().Add(*timeout)
	for {
		err := try()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			fail("%s: none after %v (last error %v)", what, *timeout, err)
		}
		time.Sleep(pause)
	}
}

func pct(sorted []time.Duration, p float64) *float64 {
	i := int(p*float64(len(sorted))+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	v := float64(sorted[i].Nanoseconds()) / 1e3
	return &v
}

func jsPubSync(nc *nats.Conn) result {
	js := jsContext(nc)
	freshStream(js)
	data := payload()
	r := result{Mode: *mode, Msgs: *n, Size: *size}
	syncPublishes(js, jsSubject, data, &r)
	return r
}

// syncPublishes times -n synchronous publishes to subject, with their latencies.
func syncPublishes(js nats.JetStreamContext, subject string, data []byte, r *result) {
	lat := make([]time.Duration, *n)
	done := timed()
	for i := 0; i < *n; i++ {
		t := time.Now()
		if _, err := js.Publish(subject, data); err != nil {
			fail("publish %d to %s: %v", i, subject, err)
		}
		lat[i] = time.Since(t)
	}
	done(r)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	r.P50, r.P90, r.P99 = pct(lat, 0.50), pct(lat, 0.90), pct(lat, 0.99)
}

func jsPull(nc *nats.Conn) result {
	js := jsContext(nc)
	freshStream(js)
	publishAsync(js, *n)
	_, err := js.AddConsumer(streamName, &nats.ConsumerConfig{
		Durable: consumerName, AckPolicy: nats.AckExplicitPolicy,
	})
	if err != nil {
		fail("create consumer: %v", err)
	}
	if *replicas > 1 {
		// Not timed: the consumer's own group must have a leader before the first Fetch.
		retryUntil("a consumer leader", 100*time.Millisecond, func() error {
			info, err := js.ConsumerInfo(streamName, consumerName)
			if err == nil && (info.Cluster == nil || info.Cluster.Leader == "") {
				err = errors.New("no leader yet")
			}
			return err
		})
	}
	sub, err := js.PullSubscribe(jsSubject, consumerName, nats.Bind(streamName, consumerName))
	if err != nil {
		fail("pull subscribe: %v", err)
	}
	r := result{Mode: *mode, Msgs: *n, Size: *size}
	done := timed()
	got := 0
	for got < *n {
		want := *batch
		if *n-got < want {
			want = *n - got
		}
		msgs, err := sub.Fetch(want, nats.MaxWait(*apiWait))
		if err != nil {
			fail("fetch after %d of %d: %v", got, *n, err)
		}
		for _, m := range msgs {
			if err := m.Ack(); err != nil {
				fail("ack: %v", err)
			}
		}
		got += len(msgs)
	}
	if err := nc.Flush(); err != nil {
		fail("flush: %v", err)
	}
	done(&r)
	return r
}

func jsPush(nc *nats.Conn) result {
	js := jsContext(nc)
	freshStream(js)
	publishAsync(js, *n)
	r := result{Mode: *mode, Msgs: *n, Size: *size}
	var received int64
	all := make(chan struct{})
	done := timed()
	sub, err := js.Subscribe(jsSubject, func(_ *nats.Msg) {
		if atomic.AddInt64(&received, 1) == int64(*n) {
			close(all)
		}
	}, nats.OrderedConsumer(), nats.BindStream(streamName))
	if err != nil {
		fail("ordered push subscribe: %v", err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		fail("pending limits: %v", err)
	}
	select {
	case <-all:
	case <-time.After(*timeout):
		fail("push: %d of %d after %v", atomic.LoadInt64(&received), *n, *timeout)
	}
	done(&r)
	if err := sub.Unsubscribe(); err != nil {
		fail("unsubscribe: %v", err)
	}
	return r
}

// countingSub subscribes sc to subject without pending limits, counting into received
// and closing all at target; flushed, so the server has the subscription.
func countingSub(sc *nats.Conn, subject string, received *int64, target int64, all chan struct{}) {
	countingQueueSub(sc, subject, "", received, target, all)
}

// countingQueueSub is countingSub in a queue group (none when queue is empty).
func countingQueueSub(sc *nats.Conn, subject, queue string, received *int64, target int64, all chan struct{}) {
	sub, err := sc.QueueSubscribe(subject, queue, func(_ *nats.Msg) {
		if atomic.AddInt64(received, 1) == target {
			close(all)
		}
	})
	if err != nil {
		fail("subscribe: %v", err)
	}
	sub.SetPendingLimits(-1, -1)
	if err := sc.Flush(); err != nil {
		fail("flush: %v", err)
	}
}

func corePubSub(pc *nats.Conn) result {
	return coreFan(pc, 1, "")
}

// coreFan publishes -n messages on coreSubject to subs subscriber connections:
// each gets every message (fan-out), or, with a queue group, one of them does.
// The rate is of deliveries: n x subs for fan-out, n for a queue group.
func coreFan(pc *nats.Conn, subs int, queue string) result {
	per := int64(subs)
	if queue != "" {
		per = 1
	}
	target := int64(*n) * per
	var received int64
	all := make(chan struct{})
	for i := 0; i < subs; i++ {
		sc := connect(fmt.Sprintf("jsgen-sub-%d", i))
		defer sc.Close()
		countingQueueSub(sc, coreSubject, queue, &received, target, all)
	}
	// The subscriptions have reached the server; wait until the publisher's side sees
	// the interest too (one server here, so a flush on the publisher suffices).
	if err := pc.Flush(); err != nil {
		fail("flush: %v", err)
	}
	data := payload()
	window := int64(*inflight/(*size+48)) * per
	if window < per {
		window = per
	}
	r := result{Mode: *mode, Msgs: int(target), Size: *size}
	deadline := time.Now().Add(*timeout)
	done := timed()
	for i := int64(0); i < int64(*n); i++ {
		waitWindow(i*per, &received, window, target, deadline)
		if err := pc.Publish(coreSubject, data); err != nil {
			fail("publish %d: %v", i, err)
		}
	}
	if err := pc.Flush(); err != nil {
		fail("flush: %v", err)
	}
	awaitAll(all, &received, target, deadline)
	done(&r)
	return r
}

// waitWindow waits until fewer than window of the sent messages are still to arrive.
func waitWindow(sent int64, received *int64, window, target int64, deadline time.Time) {
	for sent-atomic.LoadInt64(received) >= window {
		if time.Now().After(deadline) {
			fail("received %d of %d", atomic.LoadInt64(received), target)
		}
		time.Sleep(20 * time.Microsecond)
	}
}

// awaitAll waits until the subscribers counted target messages.
func awaitAll(all chan struct{}, received *int64, target int64, deadline time.Time) {
	select {
	case <-all:
	case <-time.After(time.Until(deadline)):
		fail("received %d of %d", atomic.LoadInt64(received), target)
	}
}

func main() {
	flag.Parse()
	if *showVer {
		fmt.Printf("jsgen (nats.go %s)\n", nats.Version)
		return
	}
	if *n < 1 || *size < 0 || *window < 1 || *batch < 1 || *replicas < 1 {
		fail("bad -n, -size, -w, -batch or -replicas")
	}
	for _, p := range strings.Split(*serverPid, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		pid, err := strconv.Atoi(p)
		if err != nil || pid < 1 {
			fail("bad -server-pid %q", *serverPid)
		}
		serverPids = append(serverPids, pid)
	}
	time.AfterFunc(*timeout, func() {
		fmt.Fprintf(os.Stderr, "jsgen %s: timed out after %v\n", *mode, *timeout)
		if strings.HasPrefix(*mode, "scale-") {
			// What was measured so far, and the phase that did not finish.
			scaleRec.set("error", fmt.Sprintf("timed out after %v in phase %v", *timeout, scaleRec.get("phase")))
			fmt.Println(string(scaleRec.json()))
		}
		os.Exit(2)
	})
	nc := connect("jsgen")
	defer nc.Close()
	if strings.HasPrefix(*mode, "scale-") {
		runScale(nc)
		return
	}
	var r result
	switch *mode {
	case "js-pub-async":
		r = jsPubAsync(nc)
	case "js-pub-sync":
		r = jsPubSync(nc)
	case "js-pull":
		r = jsPull(nc)
	case "js-push":
		r = jsPush(nc)
	case "core-pubsub":
		r = corePubSub(nc)
	case "js-failover":
		r = jsFailover(nc)
	case "core-fanout":
		r = coreFan(nc, *fanSubs, "")
	case "core-queue":
		r = coreFan(nc, *fanSubs, "q")
	case "core-route":
		r = coreRoute(nc)
	case "core-reqrep":
		r = coreReqRep(nc)
	default:
		fail("unknown mode")
	}
	if *replicas > 1 && strings.HasPrefix(*mode, "js-") {
		r.Replicas, r.StreamLeader = *replicas, streamLeader
	}
	out, _ := json.Marshal(r)
	fmt.Println(string(out))
}
