package filewatch_test

import (
	"time"

	"github.com/nats-io/nats.go"
)

type natsConn = nats.Conn

// natsConnect connects as the watch verb does: reconnecting for ever, so a
// server restart is waited out.
func natsConnect(url string) (*nats.Conn, error) {
	return nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
}
