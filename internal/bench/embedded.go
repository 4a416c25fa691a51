package bench

import (
	"context"

	"github.com/codi2/codi2/internal/server"
	"github.com/rs/zerolog"
)

// embedded is a codi2 server running inside the bench process, assembled by
// internal/server exactly as `codi2 serve` runs it: the bus with its
// embedded NATS server, one bbolt store each for state and audit, and the
// two services, each on an in-process connection of its own.
type embedded struct {
	srv *server.Server
}

// startEmbedded starts a server on dir with store (server.Config.Store,
// empty for the default) listening on listen (port -1 picks one). It
// returns once the services are running; they answer requests shortly
// after.
func startEmbedded(ctx context.Context, dir, store, listen string, log zerolog.Logger) (*embedded, error) {
	srv, err := server.Start(ctx, server.Config{DataDir: dir, Store: store, NATSListen: listen}, log)
	if err != nil {
		return nil, err
	}
	return &embedded{srv: srv}, nil
}

// url is the NATS URL clients connect to over TCP.
func (e *embedded) url() string { return e.srv.Bus().ClientURL() }

// stop shuts the server down in serve's order and returns the services'
// errors, if any.
func (e *embedded) stop() error { return e.srv.Stop() }
