package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/internal/auth"
	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/state"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// Store names accepted by Config.Store.
const (
	StoreBolt = "bolt"
	StoreFDB  = "fdb"
)

// DefaultCheckpointKey is the audit checkpoint signer key's file name in
// the data directory when Config.Audit.CheckpointKeyFile is empty; its
// public key is DefaultCheckpointKey+".pub".
const DefaultCheckpointKey = "audit.key"

// Config describes one codi2 process.
type Config struct {
	// DataDir holds JetStream's files and the embedded stores (state.db,
	// audit.db). It is created if missing. Required.
	DataDir string
	// NATSListen is the embedded NATS server's client address
	// (bus.DefaultListen when empty; port -1 picks a free one).
	NATSListen string
	// NATSURL, when set, uses an existing NATS server or cluster instead of
	// the embedded one.
	NATSURL string
	// SyncAlways fsyncs every JetStream write before its PubAck.
	SyncAlways bool
	// Store is StoreBolt (the default) or StoreFDB.
	Store string
	// FDBClusterFile is the FoundationDB cluster file for StoreFDB; empty
	// means the client library's default.
	FDBClusterFile string
	// Auth makes the embedded NATS server require codi2 credentials
	// (CONTRACT.md section 6), kept in DataDir/auth; see internal/auth.
	Auth bool
	// TLSCert and TLSKey put the embedded NATS listener behind TLS.
	TLSCert, TLSKey string
	// Creds is the credentials file of the process's own connections to
	// NATSURL (an external server with auth).
	Creds string
	// State and Audit configure the two services.
	State state.Config
	Audit audit.Config
}

// Validate fills defaults and reports an unusable configuration.
func (c *Config) Validate() error {
	if c.Store == "" {
		c.Store = StoreBolt
	}
	switch {
	case c.DataDir == "":
		return errors.New("server: a data directory is required")
	case c.Store != StoreBolt && c.Store != StoreFDB:
		return fmt.Errorf("server: store %q: want %s or %s", c.Store, StoreBolt, StoreFDB)
	}
	return nil
}

// Server is a running codi2 process. Its methods are safe for concurrent
// use.
type Server struct {
	cfg    Config
	log    zerolog.Logger
	bus    *bus.Bus
	stores []kv.Store
	conns  []*nats.Conn

	cancel   context.CancelFunc
	wg       sync.WaitGroup
	failOnce sync.Once
	failed   chan struct{}
	mu       sync.Mutex
	errs     []error
	stopOnce sync.Once
	stopErr  error
	ready    []<-chan struct{}
	// problems report conditions that keep the server from serving in
	// full while they last (a stream missing), for readiness.
	problems []func() error
}

// Start opens the data directory, starts the bus (creating or updating the
// streams), opens the stores and runs the state and audit services, each on
// a connection of its own. It returns once both services answer requests.
// On error everything started is stopped.
func Start(ctx context.Context, cfg Config, log zerolog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("server: data directory: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return nil, fmt.Errorf("server: data directory: %w", err)
	}
	cfg.DataDir = dataDir
	bcfg := bus.Config{DataDir: dataDir, Listen: cfg.NATSListen, URL: cfg.NATSURL, SyncAlways: cfg.SyncAlways,
		TLSCert: cfg.TLSCert, TLSKey: cfg.TLSKey, Creds: cfg.Creds}
	if cfg.Auth && cfg.NATSURL == "" {
		if bcfg.Auth, err = auth.Open(filepath.Join(dataDir, "auth")); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
	}
	b, err := bus.Start(ctx, bcfg, log)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, bus: b, failed: make(chan struct{})}
	if err := s.start(ctx); err != nil {
		s.close()
		return nil, err
	}
	if err := s.waitReady(ctx); err != nil {
		return nil, errors.Join(err, s.Stop())
	}
	return s, nil
}

// waitReady waits until both services answer requests, one of them fails,
// or ctx ends.
func (s *Server) waitReady(ctx context.Context) error {
	for _, ready := range s.ready {
		select {
		case <-ready:
		case <-s.failed:
			return errors.New("server: a service failed while starting")
		case <-ctx.Done():
			return fmt.Errorf("server: not ready: %w", ctx.Err())
		}
	}
	return nil
}

func (s *Server) start(ctx context.Context) error {
	st, au, err := openStores(s.cfg)
	if err != nil {
		return err
	}
	s.stores = append(s.stores, st)
	if au != st {
		s.stores = append(s.stores, au)
	}
	stateNC, err := s.connect(state.ServiceName, s.bus.Connect)
	if err != nil {
		return err
	}
	stateSvc, err := state.New(s.cfg.State, stateNC, st, s.log)
	if err != nil {
		return err
	}
	// The audit service takes events in bulk, which a socket carries
	// better than the synchronous in-process pipe (see bus.ConnectNetwork).
	auditNC, err := s.connect(audit.ServiceName, s.bus.ConnectNetwork)
	if err != nil {
		return err
	}
	auditCfg := s.cfg.Audit
	if auditCfg.CheckpointKeyFile == "" {
		// Next to audit.db, never inside the store it vouches for.
		auditCfg.CheckpointKeyFile = filepath.Join(s.cfg.DataDir, DefaultCheckpointKey)
	}
	auditSvc, err := audit.New(auditCfg, auditNC, au, s.log)
	if err != nil {
		return err
	}
	// Agents' inbox consumers are made by the server for them (see
	// bus.InboxService); its subscriptions end with the connection.
	if _, err := bus.ServeInboxes(stateNC, s.log); err != nil {
		return err
	}
	// The services outlive the start context: Stop ends them.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.ready = []<-chan struct{}{stateSvc.Ready(), auditSvc.Ready()}
	// Streams deleted under the running server come back (CODI_MSG has
	// no service that would notice; see bus.StreamWatch).
	watch := bus.NewStreamWatch(s.bus.JetStream(), s.bus.Config(), 0, s.log)
	s.problems = []func() error{stateSvc.Problem, auditSvc.Problem, watch.Problem}
	for _, run := range []func(context.Context) error{stateSvc.Run, auditSvc.Run, watch.Run} {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := run(runCtx); err != nil {
				s.mu.Lock()
				s.errs = append(s.errs, err)
				s.mu.Unlock()
				s.failOnce.Do(func() { close(s.failed) })
			}
		}()
	}
	return nil
}

func (s *Server) connect(name string, dial func(string, ...nats.Option) (*nats.Conn, error)) (*nats.Conn, error) {
	nc, err := dial(name)
	if err != nil {
		return nil, fmt.Errorf("server: connect %s: %w", name, err)
	}
	s.conns = append(s.conns, nc)
	return nc, nil
}

// Problem returns what keeps the server from serving in full right now (a
// contract stream deleted and not yet recreated, a service not consuming
// it), or nil; for readiness. Safe for concurrent use.
func (s *Server) Problem() error {
	var errs []error
	for _, p := range s.problems {
		if err := p(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Bus is the running bus.
func (s *Server) Bus() *bus.Bus { return s.bus }

// DataDir is the absolute data directory.
func (s *Server) DataDir() string { return s.cfg.DataDir }

// Failed is closed when a service stopped with an error before Stop; Stop
// returns the error.
func (s *Server) Failed() <-chan struct{} { return s.failed }

// Stop shuts the process down in order and returns the services' errors.
// Later calls return the same result.
//
//  1. Stop intake: cancel the services; each stops fetching, commits and
//     acks what it holds, and returns from Run.
//  2. Close the services' connections.
//  3. Drain the bus connection and shut the NATS server down.
//  4. Close the stores.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		if s.cancel != nil {
			s.cancel()
		}
		s.wg.Wait()
		s.close()
		s.mu.Lock()
		s.stopErr = errors.Join(s.errs...)
		s.mu.Unlock()
	})
	return s.stopErr
}

// close runs steps 2-4 of Stop.
func (s *Server) close() {
	for _, nc := range s.conns {
		nc.Close()
	}
	s.bus.Close()
	for _, st := range s.stores {
		if err := st.Close(); err != nil {
			s.log.Error().Err(err).Msg("close store")
		}
	}
}
