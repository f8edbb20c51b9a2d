// TLS round trip through nats.go (Debian's 1.22, built offline in GOPATH mode):
// connects with the test CA and, when given, a client certificate; a message
// published comes back to its own subscription. Prints "nats.go ok".
//
// Usage: gotls URL CA_FILE [CERT_FILE KEY_FILE]
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
)

func main() {
	if len(os.Args) != 3 && len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: gotls URL CA_FILE [CERT_FILE KEY_FILE]")
		os.Exit(2)
	}
	opts := []nats.Option{nats.RootCAs(os.Args[2]), nats.NoReconnect(), nats.Timeout(5 * time.Second)}
	if len(os.Args) == 5 {
		opts = append(opts, nats.ClientCert(os.Args[3], os.Args[4]))
	}
	nc, err := nats.Connect(os.Args[1], opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nats.go: connect:", err)
		os.Exit(1)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("go.tls")
	if err == nil {
		err = nc.Publish("go.tls", []byte("hello"))
	}
	var msg *nats.Msg
	if err == nil {
		msg, err = sub.NextMsg(10 * time.Second)
	}
	if err != nil || string(msg.Data) != "hello" {
		fmt.Fprintln(os.Stderr, "nats.go: round trip:", err)
		os.Exit(1)
	}
	fmt.Println("nats.go ok")
}
