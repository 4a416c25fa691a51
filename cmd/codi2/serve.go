package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/state"
	"github.com/rs/zerolog"
)

// serveConfig is everything `codi2 serve` is told by flags and environment.
type serveConfig struct {
	DataDir        string
	NATSListen     string
	HTTPListen     string
	NATSURL        string
	Store          string
	FDBClusterFile string
	LogLevel       string
	LogFormat      string
	SyncAlways     bool
}

func parseServe(args []string, stderr io.Writer) (serveConfig, error) {
	var c serveConfig
	fs := newFlagSet("codi2 serve", stderr)
	fs.StringVar(&c.DataDir, "data", "./codi2-data", "data directory: JetStream files and the embedded store")
	fs.StringVar(&c.NATSListen, "nats-listen", bus.DefaultListen, "embedded NATS client address HOST:PORT")
	fs.StringVar(&c.HTTPListen, "http-listen", "127.0.0.1:8080", "HTTP address HOST:PORT (health and status)")
	fs.StringVar(&c.NATSURL, "nats-url", "", "use this NATS server or cluster instead of the embedded one")
	fs.StringVar(&c.Store, "store", "bolt", "state and audit store: bolt (embedded file) or fdb (FoundationDB)")
	fs.StringVar(&c.FDBClusterFile, "fdb-cluster-file", "", "FoundationDB cluster file (--store fdb); empty: the client's default")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: trace, debug, info, warn, error")
	fs.StringVar(&c.LogFormat, "log-format", "auto", "log format: auto (console on a terminal), json, console")
	fs.BoolVar(&c.SyncAlways, "nats-sync-always", false, "fsync every JetStream write before its PubAck (about 20x slower)")
	if err := parseWithEnv(fs, args); err != nil {
		return c, err
	}
	switch c.Store {
	case "bolt", "fdb":
	default:
		return c, fmt.Errorf("--store %q: want bolt or fdb", c.Store)
	}
	if _, _, err := net.SplitHostPort(c.HTTPListen); err != nil {
		return c, fmt.Errorf("--http-listen %q: %v", c.HTTPListen, err)
	}
	return c, nil
}

func runServe(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, err := parseServe(args, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, log)
}

// serve runs the server until ctx is done, then shuts it down in order.
func serve(ctx context.Context, cfg serveConfig, log zerolog.Logger) error {
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	b, err := bus.Start(ctx, bus.Config{
		DataDir:    dataDir,
		Listen:     cfg.NATSListen,
		URL:        cfg.NATSURL,
		SyncAlways: cfg.SyncAlways,
	}, log)
	if err != nil {
		return err
	}
	defer func() { log.Info().Msg("codi2 stopped") }() // runs last, after the bus and stores close
	defer b.Close()

	stores, err := openStores(cfg, dataDir, log)
	if err != nil {
		return err
	}
	defer stores.close(log)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var g group
	// state: the state service applies CODI_STATE to the state store, on a
	// connection of its own (closed by the defer, after g.Wait).
	stateNC, err := b.Connect("codi-state")
	if err != nil {
		return fmt.Errorf("state: connect: %w", err)
	}
	defer stateNC.Close()
	stateSvc, err := state.New(state.Config{}, stateNC, stores.state, log)
	if err != nil {
		return err
	}
	g.Go(func() error { return stateSvc.Run(runCtx) })
	// audit: the audit service appends CODI_AUDIT to the audit store, on a
	// connection of its own (closed by the defer, after g.Wait).
	auditNC, err := b.Connect("codi-audit")
	if err != nil {
		return fmt.Errorf("audit: connect: %w", err)
	}
	defer auditNC.Close()
	auditSvc, err := audit.New(audit.Config{}, auditNC, stores.audit, log)
	if err != nil {
		return err
	}
	g.Go(func() error { return auditSvc.Run(runCtx) })

	httpLn, err := net.Listen("tcp", cfg.HTTPListen)
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	hs := &http.Server{Handler: healthHandler(b), ReadHeaderTimeout: 5 * time.Second}
	g.Go(func() error {
		if err := hs.Serve(httpLn); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})

	log.Info().
		Str("nats", b.ClientURL()).
		Bool("embedded", b.Embedded()).
		Str("data", dataDir).
		Str("store", cfg.Store).
		Str("http", "http://"+httpLn.Addr().String()).
		Msg("codi2 ready")

	select {
	case <-ctx.Done():
	case <-g.failed():
	}
	log.Info().Msg("codi2 shutting down")
	// Shutdown order:
	//  1. stop intake: cancel the services; each stops fetching, commits and
	//     acks what it has, and returns from Run.
	//  2. stop the HTTP server.
	//  3. wait for every goroutine of the group.
	//  4. deferred: drain the bus connection and shut the NATS server down.
	//  5. deferred: close the stores.
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = hs.Shutdown(sctx)
	return g.Wait()
}

// stores are the state and audit stores: two bbolt files, so that their
// commits do not wait on one another, or one FoundationDB database.
type stores struct {
	state, audit kv.Store
}

func (s stores) close(log zerolog.Logger) {
	for _, st := range []kv.Store{s.state, s.audit} {
		if st == nil {
			continue
		}
		if err := st.Close(); err != nil {
			log.Error().Err(err).Msg("close store")
		}
		if s.state == s.audit {
			return
		}
	}
}

func healthHandler(b *bus.Bus) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		status := map[string]any{"status": "ok", "nats": b.ClientURL(), "version": versionString()}
		if !b.Conn().IsConnected() {
			w.WriteHeader(http.StatusServiceUnavailable)
			status["status"] = "nats disconnected"
		}
		_ = json.NewEncoder(w).Encode(status)
	})
	return mux
}

// group runs goroutines and collects the first error; failed is closed when
// one of them returns an error.
type group struct {
	wg      sync.WaitGroup
	once    sync.Once
	err     error
	failure chan struct{}
	init    sync.Once
}

func (g *group) failed() <-chan struct{} { return g.failureCh() }

func (g *group) failureCh() chan struct{} {
	g.init.Do(func() { g.failure = make(chan struct{}) })
	return g.failure
}

func (g *group) Go(fn func() error) {
	ch := g.failureCh()
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := fn(); err != nil {
			g.once.Do(func() {
				g.err = err
				close(ch)
			})
		}
	}()
}

func (g *group) Wait() error {
	g.wg.Wait()
	return g.err
}
