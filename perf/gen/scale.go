// The scale modes of jsgen, driven by perf/js_scale.py: the cases nats-server users report
// as slow (many subjects, a filtered consumer on many subjects, many consumers, many
// streams, a large KV bucket). Each prints one JSON object on stdout with what it measured:
// seconds of each timed phase ("<phase>_secs"), the server's CPU over it with -server-pid
// ("<phase>_cpu_us"), and checks of what the server reports afterwards. A failure or a
// timeout still prints the object, with "error" naming the phase that did not finish, and
// exits with status 1 (failure) or 2 (timeout).
//
//	scale-subjects   stream SUBJ on subj.> with max_msgs_per_subject 10; PublishAsync -n
//	                 messages of -size bytes round-robin over -subjects subjects (subj.0 ...);
//	                 rate; then the stream's message count against what the limit keeps.
//	scale-filter     stream FILT on filt.>: -subjects messages, one on each of filt.s.0 ...,
//	                 with -filtered more on filt.target spread evenly through them (fill not
//	                 timed); then times creating a durable pull consumer filtered to
//	                 filt.target (explicit ack, deliver all) and fetching all -filtered
//	                 messages (Fetch(-batch), Ack each; a Fetch that times out is retried).
//	scale-consumers  stream IDLE on idle.> (max_consumers -consumers) with -n messages; creates -consumers durable pull
//	                 consumers (explicit ack) with -workers requests in flight; then the
//	                 stream's consumer count. The idle phase is timed by the caller.
//	scale-streams    creates -streams streams (S0000 ... on st.0 ..., -replicas each) with -workers requests
//	                 in flight, then -n messages in each (PublishAsync, round-robin); then the
//	                 account's stream count. The restart is timed by the caller.
//	scale-kv         KV bucket SCALE (history 1, file): -keys keys k0000000 ... of -size
//	                 bytes (PublishAsync on $KV.SCALE.<key>, not timed); times kv.Keys() and a
//	                 WatchAll() until its end-of-initial-values marker (nil entry).
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

var (
	subjects  = flag.Int("subjects", 1000, "scale-subjects / scale-filter: subjects")
	filtered  = flag.Int("filtered", 1000, "scale-filter: messages on the filtered subject")
	consumers = flag.Int("consumers", 10000, "scale-consumers: durable pull consumers")
	streams   = flag.Int("streams", 1000, "scale-streams: streams")
	keys      = flag.Int("keys", 100000, "scale-kv: keys")
	workers   = flag.Int("workers", 8, "scale-consumers / scale-streams: API requests in flight")
)

// scaleRec is the scale modes' output, filled phase by phase; fail and the timeout print it.
var scaleRec = &record{m: map[string]interface{}{}}

type record struct {
	mu sync.Mutex
	m  map[string]interface{}
}

func (r *record) set(k string, v interface{}) {
	r.mu.Lock()
	r.m[k] = v
	r.mu.Unlock()
}

func (r *record) get(k string) interface{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[k]
}

func (r *record) json() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, _ := json.Marshal(r.m)
	return b
}

// phase starts a timed phase; the returned func records <name>_secs (and <name>_cpu_us
// with -server-pid) and returns the seconds.
func phase(name string) func() float64 {
	scaleRec.set("phase", name)
	var t0 int64
	if len(serverPids) > 0 {
		t0, _ = serversTicks()
	}
	start := time.Now()
	return func() float64 {
		secs := time.Since(start).Seconds()
		scaleRec.set(name+"_secs", secs)
		if len(serverPids) > 0 {
			if t1, err := serversTicks(); err == nil {
				scaleRec.set(name+"_cpu_us", float64(t1-t0)*1e6/100)
			}
		}
		return secs
	}
}

// wrong records a check that failed: the server answered, but not what it should have.
func wrong(format string, a ...interface{}) {
	msg := fmt.Sprintf(format, a...)
	if prev, ok := scaleRec.get("wrong").(string); ok {
		msg = prev + "; " + msg
	}
	scaleRec.set("wrong", msg)
}

func recreateStream(js nats.JetStreamContext, cfg *nats.StreamConfig) {
	if err := js.DeleteStream(cfg.Name); err != nil && !errors.Is(err, nats.ErrStreamNotFound) {
		fail("delete stream %s: %v", cfg.Name, err)
	}
	cfg.Storage, cfg.Replicas = nats.FileStorage, 1
	if _, err := js.AddStream(cfg); err != nil {
		fail("create stream %s: %v", cfg.Name, err)
	}
}

func names(prefix string, count int) []string {
	s := make([]string, count)
	for i := range s {
		s[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return s
}

func scaleSubjects(js nats.JetStreamContext) {
	const perSubject = 10
	recreateStream(js, &nats.StreamConfig{Name: "SUBJ", Subjects: []string{"subj.>"},
		MaxMsgsPerSubject: perSubject})
	subj := names("subj.", *subjects)
	scaleRec.set("msgs", *n)
	scaleRec.set("subjects", *subjects)
	done := phase("publish")
	publishAsyncTo(js, *n, func(i int) string { return subj[i%len(subj)] }, payload())
	secs := done()
	scaleRec.set("rate", float64(*n)/secs)
	scaleRec.set("phase", "check")
	expect := 0
	for i := 0; i < *subjects; i++ {
		c := *n / *subjects
		if i < *n%*subjects {
			c++
		}
		if c > perSubject {
			c = perSubject
		}
		expect += c
	}
	si, err := js.StreamInfo("SUBJ")
	if err != nil {
		fail("stream info: %v", err)
	}
	scaleRec.set("stream_msgs", si.State.Msgs)
	if si.State.Msgs != uint64(expect) {
		wrong("stream holds %d messages, the per-subject limit keeps %d", si.State.Msgs, expect)
	}
}

func scaleFilter(nc *nats.Conn, js nats.JetStreamContext) {
	const target = "filt.target"
	recreateStream(js, &nats.StreamConfig{Name: "FILT", Subjects: []string{"filt.>"}})
	// Subjects in stream order: filt.s.<i> for every i, and filt.target after every
	// (subjects/filtered)-th, the remainder (if filtered > subjects) at the end.
	every := *subjects / *filtered
	if every < 1 {
		every = 1
	}
	order := make([]string, 0, *subjects+*filtered)
	placed := 0
	for i := 0; i < *subjects; i++ {
		order = append(order, fmt.Sprintf("filt.s.%d", i))
		if i%every == every/2 && placed < *filtered {
			order = append(order, target)
			placed++
		}
	}
	for ; placed < *filtered; placed++ {
		order = append(order, target)
	}
	scaleRec.set("msgs", len(order))
	scaleRec.set("subjects", *subjects)
	scaleRec.set("filtered", *filtered)
	done := phase("fill")
	publishAsyncTo(js, len(order), func(i int) string { return order[i] }, payload())
	done()

	done = phase("create")
	ci, err := js.AddConsumer("FILT", &nats.ConsumerConfig{Durable: "F", FilterSubject: target,
		AckPolicy: nats.AckExplicitPolicy, DeliverPolicy: nats.DeliverAllPolicy})
	if err != nil {
		fail("create consumer: %v", err)
	}
	done()
	scaleRec.set("num_pending", ci.NumPending)
	if ci.NumPending != uint64(*filtered) {
		wrong("consumer created with num_pending %d, want %d", ci.NumPending, *filtered)
	}

	scaleRec.set("phase", "subscribe")
	sub, err := js.PullSubscribe(target, "F", nats.Bind("FILT", "F"))
	if err != nil {
		fail("pull subscribe: %v", err)
	}
	done = phase("fetch")
	got, retries := 0, 0
	for got < *filtered {
		want := *batch
		if *filtered-got < want {
			want = *filtered - got
		}
		msgs, err := sub.Fetch(want, nats.MaxWait(*apiWait))
		if errors.Is(err, nats.ErrTimeout) && len(msgs) == 0 {
			retries++ // a slow server is measured, not failed: retry until -timeout
			scaleRec.set("fetch_timeouts", retries)
			continue
		}
		if err != nil {
			fail("fetch after %d of %d: %v", got, *filtered, err)
		}
		for _, m := range msgs {
			if m.Subject != target {
				wrong("fetched a message on %s", m.Subject)
			}
			if err := m.Ack(); err != nil {
				fail("ack: %v", err)
			}
		}
		got += len(msgs)
		scaleRec.set("fetched", got)
	}
	if err := nc.Flush(); err != nil {
		fail("flush: %v", err)
	}
	done()
}

// parallel runs f(0) ... f(count-1) with -workers calls in flight; the first error fails.
func parallel(count int, what string, f func(i int) error) {
	next := make(chan int)
	var wg sync.WaitGroup
	var created int64
	var mu sync.Mutex
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					mu.Lock()
					fail("%s %d (after %d): %v", what, i, created, err)
				}
				mu.Lock()
				created++
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < count; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
}

func scaleConsumers(js nats.JetStreamContext) {
	// max_consumers set: nats-server 2.15 limits a stream to 1,000 consumers unless the
	// stream sets a (positive) limit of its own.
	recreateStream(js, &nats.StreamConfig{Name: "IDLE", Subjects: []string{"idle.>"},
		MaxConsumers: *consumers})
	subj := names("idle.", 10)
	publishAsyncTo(js, *n, func(i int) string { return subj[i%len(subj)] }, payload())
	scaleRec.set("msgs", *n)
	scaleRec.set("consumers", *consumers)
	done := phase("create")
	parallel(*consumers, "create consumer", func(i int) error {
		_, err := js.AddConsumer("IDLE", &nats.ConsumerConfig{
			Durable: fmt.Sprintf("C%05d", i), AckPolicy: nats.AckExplicitPolicy})
		return err
	})
	secs := done()
	scaleRec.set("create_rate", float64(*consumers)/secs)
	scaleRec.set("phase", "check")
	si, err := js.StreamInfo("IDLE")
	if err != nil {
		fail("stream info: %v", err)
	}
	scaleRec.set("stream_consumers", si.State.Consumers)
	if si.State.Consumers != *consumers {
		wrong("stream reports %d consumers, want %d", si.State.Consumers, *consumers)
	}
}

func scaleStreams(js nats.JetStreamContext) {
	scaleRec.set("streams", *streams)
	scaleRec.set("msgs_per_stream", *n)
	done := phase("create")
	parallel(*streams, "create stream", func(i int) error {
		_, err := js.AddStream(&nats.StreamConfig{Name: fmt.Sprintf("S%04d", i),
			Subjects: []string{fmt.Sprintf("st.%d", i)}, Storage: nats.FileStorage, Replicas: *replicas})
		return err
	})
	done()
	subj := names("st.", *streams)
	done = phase("fill")
	publishAsyncTo(js, *streams**n, func(i int) string { return subj[i%len(subj)] }, payload())
	done()
	scaleRec.set("phase", "check")
	ai, err := js.AccountInfo()
	if err != nil {
		fail("account info: %v", err)
	}
	scaleRec.set("account_streams", ai.Streams)
	if ai.Streams != *streams {
		wrong("account reports %d streams, want %d", ai.Streams, *streams)
	}
}

func scaleKV(js nats.JetStreamContext) {
	if err := js.DeleteKeyValue("SCALE"); err != nil && !errors.Is(err, nats.ErrStreamNotFound) &&
		!errors.Is(err, nats.ErrBucketNotFound) {
		fail("delete bucket: %v", err)
	}
	kv, err := js.CreateKeyValue(&nats.KeyValueConfig{Bucket: "SCALE", History: 1,
		Storage: nats.FileStorage})
	if err != nil {
		fail("create bucket: %v", err)
	}
	scaleRec.set("keys", *keys)
	done := phase("fill")
	publishAsyncTo(js, *keys, func(i int) string { return fmt.Sprintf("$KV.SCALE.k%07d", i) },
		payload())
	done()

	done = phase("keys")
	ks, err := kv.Keys()
	if err != nil {
		fail("keys: %v", err)
	}
	done()
	scaleRec.set("keys_listed", len(ks))
	if len(ks) != *keys {
		wrong("Keys() listed %d keys, want %d", len(ks), *keys)
	}

	done = phase("watch")
	w, err := kv.WatchAll()
	if err != nil {
		fail("watch: %v", err)
	}
	got := 0
	for e := range w.Updates() {
		if e == nil {
			break
		}
		got++
		if got%10000 == 0 {
			scaleRec.set("watched", got)
		}
	}
	done()
	_ = w.Stop()
	scaleRec.set("watched", got)
	if got != *keys {
		wrong("watcher delivered %d initial values, want %d", got, *keys)
	}
}

func runScale(nc *nats.Conn) {
	scaleRec.set("mode", *mode)
	js := jsContext(nc)
	switch *mode {
	case "scale-subjects":
		scaleSubjects(js)
	case "scale-filter":
		scaleFilter(nc, js)
	case "scale-consumers":
		scaleConsumers(js)
	case "scale-streams":
		scaleStreams(js)
	case "scale-kv":
		scaleKV(js)
	default:
		fail("unknown mode")
	}
	scaleRec.set("phase", "done")
	fmt.Println(string(scaleRec.json()))
}
