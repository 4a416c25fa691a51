package bench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/boltkv"
	"github.com/codi2/codi2/state"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// embedded is a codi2 server running inside the bench process, wired as
// `codi2 serve` wires it: the bus with its embedded NATS server, one bbolt
// store each for state and audit, and the two services, each on an
// in-process connection of its own. It is used by one goroutine.
type embedded struct {
	b      *bus.Bus
	conns  []*nats.Conn
	stores []kv.Store
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	errs   []error
}

// startEmbedded starts a server on dir listening on listen (port -1 picks
// one). It returns once the services are running; they answer requests
// shortly after.
func startEmbedded(ctx context.Context, dir, listen string, log zerolog.Logger) (*embedded, error) {
	b, err := bus.Start(ctx, bus.Config{DataDir: dir, Listen: listen}, log)
	if err != nil {
		return nil, err
	}
	e := &embedded{b: b}
	fail := func(err error) (*embedded, error) {
		e.close()
		return nil, err
	}
	st, err := boltkv.Open(filepath.Join(dir, "state.db"), boltkv.Options{})
	if err != nil {
		return fail(fmt.Errorf("bench: state store: %w", err))
	}
	e.stores = append(e.stores, st)
	au, err := boltkv.Open(filepath.Join(dir, "audit.db"), boltkv.Options{})
	if err != nil {
		return fail(fmt.Errorf("bench: audit store: %w", err))
	}
	e.stores = append(e.stores, au)

	conn := func(name string) (*nats.Conn, error) {
		nc, err := b.Connect(name)
		if err != nil {
			return nil, fmt.Errorf("bench: connect %s: %w", name, err)
		}
		e.conns = append(e.conns, nc)
		return nc, nil
	}
	snc, err := conn(state.ServiceName)
	if err != nil {
		return fail(err)
	}
	ss, err := state.New(state.Config{}, snc, st, log)
	if err != nil {
		return fail(err)
	}
	anc, err := conn(audit.ServiceName)
	if err != nil {
		return fail(err)
	}
	as, err := audit.New(audit.Config{}, anc, au, log)
	if err != nil {
		return fail(err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e.cancel = cancel
	for _, run := range []func(context.Context) error{ss.Run, as.Run} {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			if err := run(runCtx); err != nil {
				e.mu.Lock()
				e.errs = append(e.errs, err)
				e.mu.Unlock()
			}
		}()
	}
	return e, nil
}

// url is the NATS URL clients connect to over TCP.
func (e *embedded) url() string { return e.b.ClientURL() }

// stop shuts the server down in serve's order: stop the services (each
// commits what it holds), close their connections, drain the bus and shut
// NATS down, close the stores. It returns the services' errors, if any.
func (e *embedded) stop() error {
	if e.cancel != nil {
		e.cancel()
	}
	e.wg.Wait()
	e.close()
	e.mu.Lock()
	defer e.mu.Unlock()
	return errors.Join(e.errs...)
}

// close closes the services' connections, shuts the bus down and closes
// the stores.
func (e *embedded) close() {
	for _, nc := range e.conns {
		nc.Close()
	}
	e.conns = nil
	e.b.Close()
	for _, s := range e.stores {
		_ = s.Close()
	}
	e.stores = nil
}
