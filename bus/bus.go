package bus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Bus is a running message bus: the embedded server (unless Config.URL was
// given), one connection for the process's own services, and the streams.
// Its methods are safe for concurrent use.
type Bus struct {
	cfg Config
	log zerolog.Logger // component=bus
	// root is the caller's logger, from which the nats component derives.
	root zerolog.Logger
	srv  *server.Server // nil when connected to an external NATS
	sl   *serverLogger  // the embedded server's logger
	// faults records the streams whose files failed a write; watchStorage
	// reloads JetStream once the disk has room again.
	faults *storageFaults
	opts   *server.Options // the embedded server's
	// storageQuit stops watchStorage, which closes storageDone when it
	// returns.
	storageQuit, storageDone chan struct{}
	nc                       *nats.Conn
	js                       jetstream.JetStream
	// ncClosed is closed when nc has finished draining.
	ncClosed chan struct{}
	// Auth (auth.go): the server's own credentials and the revocation
	// watcher.
	internal             nats.Option
	watchStop, watchDone chan struct{}
}

// Start runs the bus described by cfg and creates or updates the streams. It
// fails with an error wrapping ErrConfig or ErrStart, naming the cause: an
// address in use, a data directory that cannot be written, a NATS URL that
// does not answer; ErrDiskLimits when the stream limits do not fit the disk
// (the numbers named); ErrAnotherInstance (Config.Exclusive) when another
// instance serves the streams.
func Start(ctx context.Context, cfg Config, log zerolog.Logger) (*Bus, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := &Bus{cfg: cfg, root: log, log: log.With().Str("component", "bus").Logger(), faults: newStorageFaults()}
	if cfg.URL == "" {
		if err := b.startServer(); err != nil {
			return nil, err
		}
		cfg = b.cfg // with the limits derived from the disk
	}
	b.ncClosed = make(chan struct{})
	nc, err := b.Connect("codi2-server", nats.ClosedHandler(func(*nats.Conn) { close(b.ncClosed) }))
	if err != nil {
		b.shutdownServer()
		return nil, fmt.Errorf("%w: connect: %v", ErrStart, err)
	}
	b.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("%w: jetstream: %v", ErrStart, err)
	}
	b.js = js
	if cfg.Exclusive {
		if err := b.claimInstance(); err != nil {
			b.Close()
			return nil, err
		}
	}
	sctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	if err := EnsureStreams(sctx, js, b.cfg); err != nil {
		b.Close()
		if errors.Is(err, ErrDiskLimits) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", ErrStart, err)
	}
	return b, nil
}

func (b *Bus) startServer() error {
	cfg := b.cfg
	host, port, _ := splitHostPort(cfg.Listen)
	// nats-server keeps its files under StoreDir/jetstream.
	storeDir := cfg.DataDir
	if cfg.DeferListen {
		// The listener opens later (Listen): find a taken port now, before
		// JetStream recovers its streams and the caller starts services.
		if err := CheckListen(cfg.Listen); err != nil {
			return err
		}
	}
	if err := checkWritable(filepath.Join(storeDir, "jetstream")); err != nil {
		return fmt.Errorf("%w: data directory: %v", ErrStart, err)
	}
	disk, err := MeasureDisk(storeDir)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrStart, err)
	}
	if err := DiskLimits(&cfg, disk); err != nil {
		return err
	}
	b.cfg = cfg
	opts := &server.Options{
		ServerName: cfg.ServerName,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   storeDir,
		// The streams' limits were checked against the disk (DiskLimits).
		JetStreamMaxStore: embeddedMaxStore,
		DontListen:        cfg.DeferListen,
		MaxPayload:        cfg.MaxPayload,
		NoSigs:            true,
		SyncAlways:        cfg.SyncAlways,
		Debug:             cfg.Debug,
		Trace:             cfg.Trace,
	}
	if cfg.WSListen != "" {
		if opts.Websocket, err = websocketOpts(cfg.WSListen); err != nil {
			return err
		}
	}
	if err := b.configureAuth(opts); err != nil {
		return err
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrStart, err)
	}
	sl := &serverLogger{log: b.root.With().Str("component", "nats").Logger(), faults: b.faults}
	b.sl = sl
	srv.SetLoggerV2(sl, cfg.Debug, cfg.Trace, false)
	srv.Start()
	deadline := time.Now().Add(cfg.StartTimeout)
	for !srv.ReadyForConnections(20 * time.Millisecond) {
		if err := sl.fatalErr(); err != nil {
			srv.Shutdown()
			srv.WaitForShutdown()
			return fmt.Errorf("%w: %v", ErrStart, err)
		}
		if time.Now().After(deadline) {
			srv.Shutdown()
			srv.WaitForShutdown()
			return fmt.Errorf("%w: not ready for connections on %s after %s", ErrStart, cfg.Listen, cfg.StartTimeout)
		}
	}
	b.srv = srv
	if b.cfg.Auth != nil {
		b.watchStop, b.watchDone = make(chan struct{}), make(chan struct{})
		go b.watchRevocations(b.watchStop, b.watchDone)
	}
	b.opts = opts
	b.storageQuit, b.storageDone = make(chan struct{}), make(chan struct{})
	go b.watchStorage(b.storageQuit, b.storageDone)
	return nil
}

// CheckListen reports, with an error wrapping ErrStart, whether the client
// address addr (HOST:PORT) cannot be bound now: taken, or not an address of
// this host. Port 0 and -1 (pick a free one) always pass. The address is
// released again; a caller that binds it later can still lose a race.
func CheckListen(addr string) error {
	_, port, err := splitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: listen %q: %v", ErrConfig, addr, err)
	}
	if port <= 0 {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrStart, err)
	}
	return ln.Close()
}

// Listen opens the embedded server's client listener when Config.DeferListen
// kept it closed; otherwise, and on a second call, it does nothing. It fails
// with ErrStart when the address cannot be bound (taken since Start checked
// it).
func (b *Bus) Listen() error {
	if b.srv == nil || !b.cfg.DeferListen || b.srv.Addr() != nil {
		return nil
	}
	b.srv.AcceptLoop(make(chan struct{}))
	if b.srv.Addr() == nil {
		err := b.sl.fatalErr()
		if err == nil {
			err = errors.New("no listener")
		}
		return fmt.Errorf("%w: listen on %s: %v", ErrStart, b.cfg.Listen, err)
	}
	b.log.Debug().Str("url", b.ClientURL()).Msg("listening for clients")
	return nil
}

// checkWritable creates dir and proves a file can be written in it, so that a
// read-only data directory fails at start with a clear error rather than at
// the first publish.
func checkWritable(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return err
	}
	name := f.Name()
	return errors.Join(f.Close(), os.Remove(name))
}

// Connect opens a new client connection to the bus: in-process (no TCP) to
// the embedded server, or to Config.URL. Async errors are logged. The caller
// owns and closes the connection. Safe for concurrent use.
func (b *Bus) Connect(name string, opts ...nats.Option) (*nats.Conn, error) {
	return b.connect(name, b.srv != nil, opts...)
}

// ConnectNetwork is Connect over the network even to the embedded server.
// An in-process connection is a synchronous pipe: fastest for one message
// at a time, but a consumer that takes many messages in bulk keeps more of
// them in flight over a socket's buffers.
func (b *Bus) ConnectNetwork(name string, opts ...nats.Option) (*nats.Conn, error) {
	return b.connect(name, false, opts...)
}

func (b *Bus) connect(name string, inProcess bool, opts ...nats.Option) (*nats.Conn, error) {
	base := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			ev := b.log.Error().Err(err).Str("conn", name)
			if sub != nil {
				ev = ev.Str("subject", sub.Subject)
			}
			ev.Msg("nats async error")
		}),
	}
	url := b.ClientURL()
	if inProcess {
		base = append(base, nats.InProcessServer(b.srv))
		if b.srv.Addr() == nil {
			url = nats.DefaultURL // not dialled: the connection is a pipe
		}
	}
	switch {
	case b.internal != nil:
		base = append(base, b.internal)
	case b.cfg.Creds != "" && b.srv == nil:
		base = append(base, nats.UserCredentials(b.cfg.Creds))
	}
	if b.srv != nil && b.cfg.TLSCert != "" {
		pin, err := b.pinnedTLS()
		if err != nil {
			return nil, err
		}
		base = append(base, pin)
	}
	return nats.Connect(url, append(base, opts...)...)
}

// ClientURL is the URL agents connect to over TCP: the embedded server's
// listen address, or Config.URL.
func (b *Bus) ClientURL() string {
	if b.srv != nil {
		return b.srv.ClientURL()
	}
	return b.cfg.URL
}

// Embedded reports whether the bus runs its own NATS server.
func (b *Bus) Embedded() bool { return b.srv != nil }

// Server is the embedded nats-server, or nil with Config.URL. It is exposed
// for tests and benchmarks; services use Conn and JetStream.
func (b *Bus) Server() *server.Server { return b.srv }

// Conn is the bus's own connection, shared by the process's services.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// JetStream is the JetStream context over Conn.
func (b *Bus) JetStream() jetstream.JetStream { return b.js }

// StorageProblems describes, one sentence each, the streams of the
// embedded server that cannot write since their files failed a write (a
// full disk); empty when all can. Safe for concurrent use.
func (b *Bus) StorageProblems() []string { return b.faults.problems() }

// Config is the validated configuration the bus runs with.
func (b *Bus) Config() Config { return b.cfg }

// Close drains the bus's own connection, then shuts the embedded server down
// and waits for its goroutines to exit. Connections opened with Connect are
// the caller's to close first. Close is idempotent.
func (b *Bus) Close() {
	if b.nc != nil && !b.nc.IsClosed() {
		if err := b.nc.Drain(); err != nil {
			b.nc.Close()
		}
		<-b.ncClosed
	}
	b.shutdownServer()
}

func (b *Bus) shutdownServer() {
	if b.watchStop != nil {
		close(b.watchStop)
		<-b.watchDone
		b.watchStop = nil
	}
	if b.storageQuit != nil {
		close(b.storageQuit)
		<-b.storageDone
		b.storageQuit = nil
	}
	if b.srv != nil {
		if b.cfg.DeferListen && b.srv.Addr() != nil {
			b.evictNetworkClients()
		}
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
	}
}

// evictNetworkClients stops taking clients and closes every network
// client's connection while the in-process ones stay, so that a responder
// the caller runs in process (see DeferListen) answers until the last
// network client is gone: nats-server's Shutdown closes all connections in
// random order, and a request processed after the responder's went would
// meet "no responders". Lame duck mode closes the listener at once and
// waits its grace period (ten seconds) before it closes anything; the
// clients are closed here meanwhile, and Shutdown ends the wait.
func (b *Bus) evictNetworkClients() {
	ldm := make(chan struct{})
	go func() {
		defer close(ldm)
		b.srv.LameDuckShutdown()
	}()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(5 * time.Second); b.srv.Addr() != nil && time.Now().Before(deadline); {
		<-tick.C
	}
	for offset := 0; ; {
		connz, err := b.srv.Connz(&server.ConnzOptions{Offset: offset, Limit: 1024})
		if err != nil || len(connz.Conns) == 0 {
			break
		}
		for _, c := range connz.Conns {
			if c.IP != "" { // over the network; in-process connections have none
				_ = b.srv.DisconnectClientByID(c.Cid)
			}
		}
		offset += len(connz.Conns)
	}
	b.srv.Shutdown()
	<-ldm
}
