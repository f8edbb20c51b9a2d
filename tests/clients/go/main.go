// KV and object-store scenario through nats.go's high-level JetStream API
// (the legacy nats.JetStreamContext API, as packaged by Debian: nats.go 1.22).
//
// Usage: kv_obj nats://127.0.0.1:4222
// Buckets get REPLICAS replicas (environment, default 1).
// Exits non-zero with a message on the first mismatch.
package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
)

// replicas is REPLICAS from the environment, 1 when unset.
func replicas() int {
	n := 1
	if v := os.Getenv("REPLICAS"); v != "" {
		if _, err := fmt.Sscanf(v, "%d", &n); err != nil {
			fail("REPLICAS=%q: %v", v, err)
		}
	}
	return n
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "nats.go: "+format+"\n", args...)
	os.Exit(1)
}

func must(err error, what string) {
	if err != nil {
		fail("%s: %v", what, err)
	}
}

func check(cond bool, format string, args ...interface{}) {
	if !cond {
		fail(format, args...)
	}
}

func next(w nats.KeyWatcher, what string) nats.KeyValueEntry {
	select {
	case e := <-w.Updates():
		return e
	case <-time.After(5 * time.Second):
		fail("%s: watcher timed out", what)
	}
	return nil
}

func kvScenario(js nats.JetStreamContext, bucket string) {
	kv, err := js.CreateKeyValue(&nats.KeyValueConfig{Bucket: bucket, History: 5, Replicas: replicas()})
	must(err, "create bucket")
	r1, err := kv.PutString("a", "1")
	must(err, "put a")
	_, err = kv.PutString("b", "2")
	must(err, "put b")
	e, err := kv.Get("a")
	must(err, "get a")
	check(string(e.Value()) == "1" && e.Revision() == r1, "get a: %q rev %d, want \"1\" rev %d", e.Value(), e.Revision(), r1)

	r2, err := kv.Update("a", []byte("3"), r1)
	must(err, "update a")
	check(r2 > r1, "update a: revision %d not after %d", r2, r1)
	_, err = kv.Update("a", []byte("x"), r1)
	check(errors.Is(err, nats.ErrKeyExists), "update a with stale revision: want wrong-last-sequence error, got %v", err)
	_, err = kv.Create("b", []byte("x"))
	check(errors.Is(err, nats.ErrKeyExists), "create of existing key b: want key exists error, got %v", err)
	_, err = kv.Create("c", []byte("new"))
	must(err, "create c")
	e, err = kv.Get("c")
	must(err, "get c")
	check(string(e.Value()) == "new", "get c: %q", e.Value())

	for _, v := range []string{"4", "5", "6", "7"} {
		_, err = kv.PutString("a", v)
		must(err, "put a")
	}
	hist, err := kv.History("a")
	must(err, "history a")
	var vals []string
	for i, h := range hist {
		vals = append(vals, string(h.Value()))
		check(i == 0 || h.Revision() > hist[i-1].Revision(), "history revisions not increasing at %d", i)
	}
	check(reflect.DeepEqual(vals, []string{"3", "4", "5", "6", "7"}), "history of a: %q", vals)

	must(kv.Delete("a"), "delete a")
	_, err = kv.Get("a")
	check(errors.Is(err, nats.ErrKeyNotFound), "get a after delete: want key not found, got %v", err)
	must(kv.Purge("b"), "purge b")
	_, err = kv.Get("b")
	check(errors.Is(err, nats.ErrKeyNotFound), "get b after purge: want key not found, got %v", err)
	keys, err := kv.Keys()
	must(err, "keys")
	sort.Strings(keys)
	check(reflect.DeepEqual(keys, []string{"c"}), "keys: %q, want [c]", keys)

	w, err := kv.WatchAll()
	must(err, "watch all")
	initial := map[string]string{}
	for e := next(w, "watch initial"); e != nil; e = next(w, "watch initial") {
		if e.Operation() == nats.KeyValuePut { // deletes/purges show up with their op
			initial[e.Key()] = string(e.Value())
		}
	}
	check(reflect.DeepEqual(initial, map[string]string{"c": "new"}), "watch initial values: %v", initial)
	_, err = kv.PutString("d", "live")
	must(err, "put d")
	e = next(w, "watch live put")
	check(e.Key() == "d" && string(e.Value()) == "live" && e.Operation() == nats.KeyValuePut,
		"watch live put: %s=%q op %v", e.Key(), e.Value(), e.Operation())
	must(kv.Delete("d"), "delete d")
	e = next(w, "watch live delete")
	check(e.Key() == "d" && e.Operation() == nats.KeyValueDelete, "watch live delete: %s op %v", e.Key(), e.Operation())
	must(w.Stop(), "stop watcher")

	must(js.DeleteKeyValue(bucket), "delete bucket")
	_, err = js.KeyValue(bucket)
	check(errors.Is(err, nats.ErrBucketNotFound), "bind to deleted bucket: want bucket not found, got %v", err)
}

func names(obs nats.ObjectStore) []string {
	list, err := obs.List()
	must(err, "list")
	var out []string
	for _, i := range list {
		out = append(out, i.Name)
	}
	return out
}

func objScenario(js nats.JetStreamContext, bucket string) {
	obs, err := js.CreateObjectStore(&nats.ObjectStoreConfig{Bucket: bucket, Replicas: replicas()})
	must(err, "create store")
	data := make([]byte, 10*1024*1024+123)
	_, err = rand.Read(data)
	must(err, "random data")
	sha := sha256.Sum256(data)
	info, err := obs.Put(&nats.ObjectMeta{Name: "big"}, bytes.NewReader(data))
	must(err, "put big")
	check(info.Chunks > 1, "put big: chunks %d, want several", info.Chunks)

	info, err = obs.GetInfo("big")
	must(err, "info big")
	check(info.Size == uint64(len(data)), "info size %d, want %d", info.Size, len(data))
	want := "SHA-256=" + base64.URLEncoding.EncodeToString(sha[:])
	check(info.Digest == want, "info digest %s, want %s", info.Digest, want)

	res, err := obs.Get("big")
	must(err, "get big")
	h := sha256.New()
	n, err := io.Copy(h, res)
	must(err, "read big")
	res.Close()
	check(bytes.Equal(h.Sum(nil), sha[:]), "get big: %d bytes, sha256 %s differs", n, hex.EncodeToString(h.Sum(nil)))

	check(reflect.DeepEqual(names(obs), []string{"big"}), "list: %q", names(obs))
	_, err = obs.PutString("small", "hello")
	must(err, "put small")
	must(obs.Delete("big"), "delete big")
	check(reflect.DeepEqual(names(obs), []string{"small"}), "list after delete: %q", names(obs))
	s, err := obs.GetString("small")
	must(err, "get small")
	check(s == "hello", "get small: %q", s)

	must(js.DeleteObjectStore(bucket), "delete store")
}

func main() {
	url := "nats://127.0.0.1:4222"
	if len(os.Args) > 1 {
		url = os.Args[1]
	}
	nc, err := nats.Connect(url)
	must(err, "connect")
	defer nc.Close()
	js, err := nc.JetStream()
	must(err, "jetstream context")
	tag := make([]byte, 4)
	rand.Read(tag)
	kvScenario(js, "go_kv_"+hex.EncodeToString(tag))
	objScenario(js, "go_obj_"+hex.EncodeToString(tag))
}
