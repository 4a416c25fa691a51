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
	"github.com/rs/zerolog"
)

// embedded is a codi2 server running inside the bench process, wired as
// `codi2 serve` wires it: the bus with its embedded NATS server, one bbolt
// store each for state and audit, and the two services on the bus's own
// connection. It is used by one goroutine.
type embedded struct {
	b      *bus.Bus
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

	ss, err := state.New(state.Config{}, b.Conn(), st, log)
	if err != nil {
		return fail(err)
	}
	as, err := audit.New(audit.Config{}, b.Conn(), au, log)
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
// commits what it holds), drain the bus and shut NATS down, close the
// stores. It returns the services' errors, if any.
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

// close shuts the bus down and closes the stores.
func (e *embedded) close() {
	e.b.Close()
	for _, s := range e.stores {
		_ = s.Close()
	}
	e.stores = nil
}
