package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/httpapi"
	"github.com/codi2/codi2/internal/auth"
	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/state"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// Store names accepted by Config.Store.
const (
	StoreBolt   = "bolt"
	StoreFDB    = "fdb"
	StorePebble = "pebble"
)

// DefaultStore is the store of a new data directory when Config.Store is
// empty.
const DefaultStore = StoreBolt

// detectStore is the embedded engine whose files dataDir holds: pebble when
// it has the pebble directory, bolt when it has one of bolt's files, and
// DefaultStore when it has neither (a new directory).
func detectStore(dataDir string) string {
	if fi, err := os.Stat(filepath.Join(dataDir, PebbleDir)); err == nil && fi.IsDir() {
		return StorePebble
	}
	if len(present(dataDir, boltFiles...)) > 0 {
		return StoreBolt
	}
	return DefaultStore
}

// DefaultCheckpointKey is the audit checkpoint signer key's file name in
// the data directory when Config.Audit.CheckpointKeyFile is empty; its
// public key is DefaultCheckpointKey+".pub".
const DefaultCheckpointKey = "audit.key"

// Config describes one codi2 process.
type Config struct {
	// DataDir holds JetStream's files and the embedded stores (state.db
	// and audit.db, store.db with InlineAudit, or the directory pebble).
	// It is created if missing. Required.
	DataDir string
	// NATSListen is the embedded NATS server's client address
	// (bus.DefaultListen when empty; port -1 picks a free one).
	NATSListen string
	// NATSURL, when set, uses an existing NATS server or cluster instead of
	// the embedded one.
	NATSURL string
	// SyncAlways fsyncs every JetStream write before its PubAck.
	SyncAlways bool
	// MsgMaxBytes, StateMaxBytes and AuditMaxBytes bound each stream's size
	// in bytes; zero derives them from the disk (see bus.DiskLimits).
	MsgMaxBytes, StateMaxBytes, AuditMaxBytes int64
	// ReadyMaxLag is how long the oldest message a service has not applied
	// may have waited before Readiness reports the service as lagging.
	// Default DefaultReadyMaxLag.
	ReadyMaxLag time.Duration
	// Store is StoreBolt, StorePebble or StoreFDB. Empty means the
	// embedded engine whose files DataDir already holds (DataDir/pebble:
	// pebble; otherwise bolt), and DefaultStore for a new directory. With
	// StorePebble both services share one pebble database (DataDir/pebble)
	// and the state service appends each outcome's audit record in the
	// command's own transaction, as with InlineAudit: one log write and
	// one fdatasync per commit, shared by concurrent commits.
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
	// WSListen, when set, opens the embedded NATS server's WebSocket
	// listener on HOST:PORT (see bus.Config.WSListen).
	WSListen string
	// Metrics collects the services' counts for /metrics; nil makes a new
	// registry (see Server.Metrics).
	Metrics *httpapi.Metrics
	// InlineAudit keeps the state and audit services in one bbolt file
	// (store.db) and has the state service append each outcome's audit
	// record in the transaction that applies the command
	// (state.Config.AppendAudit with audit.AppendInTxn), instead of a
	// second commit by the audit service: the prototype of issue 16's
	// single commit path, off by default (with Store fdb both services share
	// the database already; StorePebble implies it).
	InlineAudit bool
	// State and Audit configure the two services.
	State state.Config
	Audit audit.Config
}

// DefaultReadyMaxLag is the default Config.ReadyMaxLag.
const DefaultReadyMaxLag = 30 * time.Second

// Validate fills defaults and reports an unusable configuration.
func (c *Config) Validate() error {
	if c.Store == "" {
		c.Store = detectStore(c.DataDir) // reads DataDir: see Config.Store
	}
	if c.ReadyMaxLag == 0 {
		c.ReadyMaxLag = DefaultReadyMaxLag
	}
	if c.State.Stream == "" {
		c.State.Stream = bus.StreamState
	}
	if c.State.Consumer == "" {
		c.State.Consumer = state.DefaultConsumer
	}
	if c.Metrics == nil {
		c.Metrics = httpapi.NewMetrics()
	}
	switch {
	case c.DataDir == "":
		return errors.New("server: a data directory is required")
	case c.Store != StoreBolt && c.Store != StorePebble && c.Store != StoreFDB:
		return fmt.Errorf("server: store %q: want %s, %s or %s", c.Store, StoreBolt, StorePebble, StoreFDB)
	}
	return nil
}

// Server is a running codi2 process. Its methods are safe for concurrent
// use.
type Server struct {
	cfg     Config
	log     zerolog.Logger
	lock    *dirLock
	bus     *bus.Bus
	standIn *standIn
	stores  []kv.Store
	conns   []*nats.Conn
	state   *state.Service
	audit   *audit.Service
	api     *httpapi.Handler
	phase   atomic.Value // string: phaseStarting, phaseRunning, phaseStopping

	cancel   context.CancelFunc
	wg       sync.WaitGroup
	failOnce sync.Once
	failed   chan struct{}
	mu       sync.Mutex
	errs     []error
	stopOnce sync.Once
	stopErr  error
	// problems report conditions that keep the server from serving in
	// full while they last (a stream missing), for readiness.
	problems []func() error
}

// Phases of a Server, as Readiness reports them.
const (
	phaseStarting = "starting"
	phaseRunning  = "running"
	phaseStopping = "stopping"
)

// Start takes the data directory's lock, starts the bus (creating or
// updating the streams), opens the stores and runs the state and audit
// services, each on a connection of its own. It returns once both services
// answer requests. On error everything started is stopped.
//
// The order keeps two promises. Nothing in the data directory is opened
// before its lock is held (ErrDataDirLocked names the holder). And from the
// moment a client can connect, a request to a service gets an answer: the
// embedded server's listener opens (its address checked first) only after
// a stand-in answers the services' request subjects with 503, and each
// service takes its subjects over once its endpoints are up. On an external
// NATS (Config.NATSURL) Start refuses when another instance serves the
// streams (bus.ErrAnotherInstance).
func Start(ctx context.Context, cfg Config, log zerolog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("server: data directory: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return nil, fmt.Errorf("server: data directory: %w", dataDirError(dataDir, err))
	}
	cfg.DataDir = dataDir
	if cfg.NATSURL == "" {
		// Every listener is checked before anything starts.
		if err := bus.CheckListen(cmp.Or(cfg.NATSListen, bus.DefaultListen)); err != nil {
			return nil, err
		}
	}
	lock, err := lockDataDir(dataDir)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, lock: lock, failed: make(chan struct{})}
	s.phase.Store(phaseStarting)
	if err := s.start(ctx); err != nil {
		s.close()
		return nil, err
	}
	if err := s.waitReady(ctx); err != nil {
		return nil, errors.Join(err, s.Stop())
	}
	s.phase.Store(phaseRunning)
	return s, nil
}

// waitReady waits until both services answer requests, one of them fails,
// or ctx ends; each service's subjects go from the stand-in to the service
// as soon as it is ready.
func (s *Server) waitReady(ctx context.Context) error {
	for name, ready := range map[string]<-chan struct{}{state.ServiceName: s.state.Ready(), audit.ServiceName: s.audit.Ready()} {
		select {
		case <-ready:
			if err := s.standIn.uncover(name); err != nil {
				return err
			}
		case <-s.failed:
			return errors.New("server: a service failed while starting")
		case <-ctx.Done():
			return fmt.Errorf("server: not ready: %w", ctx.Err())
		}
	}
	return nil
}

func (s *Server) start(ctx context.Context) error {
	cfg := s.cfg
	bcfg := bus.Config{
		DataDir:       cfg.DataDir,
		Listen:        cfg.NATSListen,
		URL:           cfg.NATSURL,
		SyncAlways:    cfg.SyncAlways,
		TLSCert:       cfg.TLSCert,
		TLSKey:        cfg.TLSKey,
		WSListen:      cfg.WSListen,
		Creds:         cfg.Creds,
		MsgMaxBytes:   cfg.MsgMaxBytes,
		StateMaxBytes: cfg.StateMaxBytes,
		AuditMaxBytes: cfg.AuditMaxBytes,
		DeferListen:   true,
		Exclusive:     true,
		Identity:      bus.Identity{DataDir: cfg.DataDir, NATS: cfg.NATSURL},
	}
	if cfg.Auth && cfg.NATSURL == "" {
		var err error
		if bcfg.Auth, err = auth.Open(filepath.Join(cfg.DataDir, "auth")); err != nil {
			return fmt.Errorf("server: %w", err)
		}
	}
	b, err := bus.Start(ctx, bcfg, s.log)
	if err != nil {
		return err
	}
	s.bus = b
	// The stand-in's connection stays open until the server has shut
	// down, so it answers for as long as clients are connected.
	standInNC, err := b.Connect("codi2-standin")
	if err != nil {
		return fmt.Errorf("server: connect stand-in: %w", err)
	}
	s.standIn = newStandIn(standInNC)
	for _, name := range []string{state.ServiceName, audit.ServiceName} {
		if err := s.standIn.cover(name, name+" is starting"); err != nil {
			return err
		}
	}
	if err := b.Listen(); err != nil {
		return err
	}
	st, au, err := openStores(cfg, s.log)
	if err != nil {
		return err
	}
	s.stores = append(s.stores, st)
	if au != st {
		s.stores = append(s.stores, au)
	}
	stateNC, err := s.connect(state.ServiceName, b.Connect)
	if err != nil {
		return err
	}
	// The services report to the metrics; every store commit is counted
	// (an fsync on bbolt).
	m := cfg.Metrics
	stateCfg := cfg.State
	stateCfg.Metrics = m
	if cfg.InlineAudit || cfg.Store == StorePebble {
		stateCfg.AppendAudit = func(tx kv.Txn) state.AuditAppender { return audit.NewAppender(tx) }
	}
	if s.state, err = state.New(stateCfg, stateNC, m.CountCommits("state", st), s.log); err != nil {
		return err
	}
	// The audit service takes events in bulk, which a socket carries
	// better than the synchronous in-process pipe (see bus.ConnectNetwork).
	auditNC, err := s.connect(audit.ServiceName, b.ConnectNetwork)
	if err != nil {
		return err
	}
	auditCfg := cfg.Audit
	if auditCfg.CheckpointKeyFile == "" {
		// Next to audit.db, never inside the store it vouches for.
		auditCfg.CheckpointKeyFile = filepath.Join(cfg.DataDir, DefaultCheckpointKey)
	}
	auditCfg.Metrics = m
	auditCfg.SharedLog = cfg.InlineAudit || cfg.Store == StorePebble
	if s.audit, err = audit.New(auditCfg, auditNC, m.CountCommits("audit", au), s.log); err != nil {
		return err
	}
	// The HTTP API reads through the contract's subjects like any client.
	apiNC, err := s.connect("codi2-http", b.Connect)
	if err != nil {
		return err
	}
	apiCfg := httpapi.Config{NC: apiNC, Metrics: m, StateConsumer: cfg.State.Consumer, Log: s.log}
	if bcfg.Auth != nil {
		// With auth the dashboard and the API need an observer login.
		apiCfg.Auth = httpapi.NewCredsAuth(bcfg.Auth)
	}
	if s.api, err = httpapi.New(apiCfg); err != nil {
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
	// Streams deleted under the running server come back (CODI_MSG has
	// no service that would notice; see bus.StreamWatch).
	watch := bus.NewStreamWatch(b.JetStream(), b.Config(), 0, s.log)
	s.problems = []func() error{s.state.Problem, s.audit.Problem, watch.Problem}
	runs := []struct {
		name string
		run  func(context.Context) error
	}{{state.ServiceName, s.state.Run}, {audit.ServiceName, s.audit.Run}, {"stream watch", watch.Run}}
	for _, r := range runs {
		name, run := r.name, r.run
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := run(runCtx); err != nil {
				// Its endpoints are gone: answer for it until Stop.
				if _, ok := serviceSubjects[name]; ok {
					_ = s.standIn.cover(name, name+" failed; codi2 is stopping")
				}
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

// HTTP is the handler of the HTTP API, the feed, /metrics and the
// dashboard (see package httpapi). Safe for concurrent use.
func (s *Server) HTTP() *httpapi.Handler { return s.api }

// Metrics is the registry /metrics serves.
func (s *Server) Metrics() *httpapi.Metrics { return s.cfg.Metrics }

// Bus is the running bus.
func (s *Server) Bus() *bus.Bus { return s.bus }

// DataDir is the absolute data directory.
func (s *Server) DataDir() string { return s.cfg.DataDir }

// Store is the store the server runs on: Config.Store, or the engine it
// chose when that was empty (StoreBolt, StorePebble or StoreFDB).
func (s *Server) Store() string { return s.cfg.Store }

// Failed is closed when a service stopped with an error before Stop; Stop
// returns the error.
func (s *Server) Failed() <-chan struct{} { return s.failed }

// Stop shuts the process down in order and returns the services' errors.
// Later calls return the same result. The HTTP API's live feeds end first.
//
//  1. The stand-in answers the services' subjects again (503, stopping).
//  2. Stop intake: cancel the services; each stops fetching, commits and
//     acks what it holds, stops its endpoints and returns from Run.
//  3. Close the services' connections.
//  4. Drain the bus connection and shut the NATS server down: it stops
//     taking clients and closes the network clients' connections first
//     (bus.Config.DeferListen), so the stand-in answers until they are
//     gone; then close the stand-in's connection.
//  5. Close the stores and release the data directory.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		s.phase.Store(phaseStopping)
		if s.api != nil {
			s.api.Close() // the live feeds end
		}
		for name := range serviceSubjects {
			if err := s.standIn.cover(name, "codi2 is stopping"); err != nil {
				s.log.Warn().Err(err).Msg("stand-in")
			}
		}
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

// close runs steps 3-5 of Stop, for whatever Start got to open.
func (s *Server) close() {
	for _, nc := range s.conns {
		nc.Close()
	}
	if s.bus != nil {
		s.bus.Close()
	}
	if s.standIn != nil {
		s.standIn.nc.Close()
	}
	for _, st := range s.stores {
		if err := st.Close(); err != nil {
			s.log.Error().Err(err).Msg("close store")
		}
	}
	s.lock.release()
}

// dataDirError is err, the failure to create dataDir, said plainly where
// the system's words mislead: a symbolic link to nothing fails with "file
// exists", and so does a file of that name.
func dataDirError(dataDir string, err error) error {
	st, serr := os.Stat(dataDir)
	switch {
	case serr == nil && !st.IsDir():
		return fmt.Errorf("%s is a file, not a directory: give another --data", dataDir)
	case serr != nil:
		// Readlink succeeds only on a symbolic link: one to nothing.
		if target, rerr := os.Readlink(dataDir); rerr == nil {
			return fmt.Errorf("%s is a symbolic link to %s, which does not exist: create it, or give another --data", dataDir, target)
		}
	}
	return err
}
