package bus

import (
	"fmt"

	"github.com/nats-io/nats-server/v2/server"
)

// websocketOpts is the embedded server's WebSocket listener on addr
// (HOST:PORT, port -1 picks a free one), for Config.WSListen: plain ws
// (browsers on the same machine, or behind a TLS-terminating proxy), the
// same accounts and permissions as the client listener. Unlike the client
// listener it opens with the server, not at Listen.
func websocketOpts(addr string) (server.WebsocketOpts, error) {
	host, port, err := splitHostPort(addr)
	if err != nil {
		return server.WebsocketOpts{}, fmt.Errorf("%w: websocket listen %q: %v", ErrConfig, addr, err)
	}
	return server.WebsocketOpts{Host: host, Port: port, NoTLS: true, Compression: true}, nil
}
