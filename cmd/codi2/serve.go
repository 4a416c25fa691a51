package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/httpapi"
	"github.com/codi2/codi2/internal/server"
	"github.com/rs/zerolog"
)

// serveConfig is everything `codi2 serve` is told by flags and environment.
type serveConfig struct {
	DataDir        string
	NATSListen     string
	HTTPListen     string
	WSListen       string
	NATSURL        string
	Store          string
	FDBClusterFile string
	LogLevel       string
	LogFormat      string
	SyncAlways     bool
	// AuditMaxAge and AuditMaxCount are the audit log's retention
	// (audit.Retention); zero keeps everything.
	AuditMaxAge   time.Duration
	AuditMaxCount uint64
	Auth          bool
	TLSCert       string
	TLSKey        string
	Creds         string
	AuditKey      string
	// NATSURLFromEnv is set when --nats-url came from CODI2_NATS_URL, which
	// the agent verbs read too: an error then says so.
	NATSURLFromEnv bool
	// Stream limits in bytes; 0 derives them from the disk.
	MsgMaxBytes, StateMaxBytes, AuditMaxBytes byteSize
	ReadyMaxLag                               time.Duration
}

func parseServe(args []string, stderr io.Writer) (serveConfig, error) {
	var c serveConfig
	fs := newFlagSet("codi2 serve", stderr)
	fs.StringVar(&c.DataDir, "data", "./codi2-data", "data directory: JetStream files and the embedded store")
	fs.StringVar(&c.NATSListen, "nats-listen", bus.DefaultListen, "embedded NATS client address HOST:PORT")
	fs.StringVar(&c.HTTPListen, "http-listen", "127.0.0.1:8080", "HTTP address HOST:PORT (API, live feed, dashboard, metrics, health)")
	fs.StringVar(&c.WSListen, "ws-listen", "", "open the embedded NATS server's WebSocket listener on HOST:PORT (off when empty)")
	fs.StringVar(&c.NATSURL, "nats-url", "", "use this NATS server or cluster instead of the embedded one")
	fs.StringVar(&c.Store, "store", "", "state and audit store: bolt (embedded files), pebble (embedded write-ahead log, one fsync per commit) or fdb (FoundationDB); default: the embedded one whose files --data holds, bolt for a new directory")
	fs.StringVar(&c.FDBClusterFile, "fdb-cluster-file", "", "FoundationDB cluster file (--store fdb); empty: the client's default")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: trace, debug, info, warn, error")
	fs.StringVar(&c.LogFormat, "log-format", "auto", "log format: auto (console on a terminal), json, console")
	fs.BoolVar(&c.SyncAlways, "nats-sync-always", false, "fsync every JetStream write before its PubAck (about 20x slower)")
	fs.DurationVar(&c.AuditMaxAge, "audit-max-age", 0, "remove audit records older than this, e.g. 720h (0: keep every age)")
	fs.Uint64Var(&c.AuditMaxCount, "audit-max-count", 0, "keep at most this many audit records (0: any number)")
	fs.BoolVar(&c.Auth, "auth", false, "require credentials made by codi2 agent add (always on for a non-loopback --nats-listen)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "TLS certificate (PEM) of the NATS listener")
	fs.StringVar(&c.TLSKey, "tls-key", "", "TLS private key (PEM) of the NATS listener")
	fs.StringVar(&c.Creds, "creds", "", "credentials file of the server's own connections to --nats-url")
	fs.StringVar(&c.AuditKey, "audit-key", "", "ed25519 key that signs audit checkpoints, created on first start with FILE.pub (default DATA/audit.key)")
	fs.Var(&c.MsgMaxBytes, "msg-max-bytes", "CODI_MSG size limit, e.g. 2GiB (0: derived from the disk)")
	fs.Var(&c.StateMaxBytes, "state-max-bytes", "CODI_STATE size limit (0: derived from the disk)")
	fs.Var(&c.AuditMaxBytes, "audit-stream-max-bytes", "CODI_AUDIT size limit (0: derived from the disk)")
	fs.DurationVar(&c.ReadyMaxLag, "ready-max-lag", server.DefaultReadyMaxLag, "/readyz fails when a service's oldest unapplied message waited longer")
	if err := parseWithEnv(fs, args); err != nil {
		return c, err
	}
	c.NATSURLFromEnv = c.NATSURL != "" && !flagGiven(args, "nats-url")
	if err := checkExposure(c); err != nil {
		return c, usageError{err}
	}
	if c.AuditMaxAge < 0 {
		return c, usagef("--audit-max-age %v: want a positive duration, or 0 to keep every age", c.AuditMaxAge)
	}
	switch c.Store {
	case "", server.StoreBolt, server.StorePebble, server.StoreFDB:
	default:
		return c, usagef("--store %q: want bolt, pebble or fdb", c.Store)
	}
	if _, _, err := net.SplitHostPort(c.HTTPListen); err != nil {
		return c, usagef("--http-listen %q: %v", c.HTTPListen, err)
	}
	if c.ReadyMaxLag <= 0 {
		return c, usagef("--ready-max-lag %s: want a positive duration", c.ReadyMaxLag)
	}
	return c, nil
}

// flagGiven reports whether args name flag (-flag or --flag, with or
// without =value).
func flagGiven(args []string, flag string) bool {
	for _, a := range args {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && name == flag {
			return true
		}
	}
	return false
}

// checkExposure refuses a NATS listener reachable from other machines
// without auth, and TLS half configured.
func checkExposure(c serveConfig) error {
	if c.NATSURL == "" && !c.Auth && !bus.IsLoopback(c.NATSListen) {
		return fmt.Errorf("--nats-listen %s is not a loopback address: add --auth (credentials from `codi2 agent add`) or listen on 127.0.0.1", c.NATSListen)
	}
	if c.WSListen != "" && !c.Auth && !bus.IsLoopback(c.WSListen) {
		return fmt.Errorf("--ws-listen %s is not a loopback address: add --auth (credentials from `codi2 agent add`) or listen on 127.0.0.1", c.WSListen)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	return nil
}

func runServe(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, err := parseServe(args, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return usageError{err}
	}
	return serve(ctx, cfg, log)
}

// serve runs the server until ctx is done, then shuts it down in order.
// Every listener is bound before anything starts: the HTTP address here
// (it answers /healthz and /readyz with 503 while the server starts), the
// NATS address by server.Start before JetStream recovers its streams.
func serve(ctx context.Context, cfg serveConfig, log zerolog.Logger) error {
	httpLn, err := net.Listen("tcp", cfg.HTTPListen)
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	metrics := httpapi.NewMetrics()
	h := &health{}
	hs := &http.Server{Handler: httpapi.AccessLog(log, metrics, h.handler()), ReadHeaderTimeout: 5 * time.Second}
	httpErr := make(chan error, 1)
	go func() { httpErr <- hs.Serve(httpLn) }()
	// stopHTTP shuts the HTTP server down and waits for it.
	stopHTTP := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
		<-httpErr
	}

	srv, err := server.Start(ctx, server.Config{
		DataDir:        cfg.DataDir,
		NATSListen:     cfg.NATSListen,
		NATSURL:        cfg.NATSURL,
		SyncAlways:     cfg.SyncAlways,
		Store:          cfg.Store,
		FDBClusterFile: cfg.FDBClusterFile,
		Audit:          audit.Config{CheckpointKeyFile: cfg.AuditKey, Retention: audit.Retention{MaxAge: cfg.AuditMaxAge, MaxCount: cfg.AuditMaxCount}},
		Auth:           cfg.Auth,
		TLSCert:        cfg.TLSCert,
		TLSKey:         cfg.TLSKey,
		Creds:          cfg.Creds,
		MsgMaxBytes:    int64(cfg.MsgMaxBytes),
		StateMaxBytes:  int64(cfg.StateMaxBytes),
		AuditMaxBytes:  int64(cfg.AuditMaxBytes),
		ReadyMaxLag:    cfg.ReadyMaxLag,
		WSListen:       cfg.WSListen,
		Metrics:        metrics,
	}, log)
	if err != nil {
		stopHTTP()
		if cfg.NATSURLFromEnv {
			err = fmt.Errorf("%w (the NATS URL %s came from CODI2_NATS_URL, which the agent verbs read too: unset it to run the embedded server)", err, cfg.NATSURL)
		}
		return err
	}
	h.srv.Store(srv)
	b := srv.Bus()
	bc := b.Config()
	log.Info().
		Str("nats", b.ClientURL()).
		Bool("embedded", b.Embedded()).
		Str("data", srv.DataDir()).
		Str("store", srv.Store()).
		Str("http", "http://"+httpLn.Addr().String()).
		Str("websocket", websocketURL(b, cfg.WSListen)).
		Bool("auth", cfg.Auth).
		Int64("msg_max_bytes", bc.MsgMaxBytes).
		Int64("state_max_bytes", bc.StateMaxBytes).
		Int64("audit_stream_max_bytes", bc.AuditMaxBytes).
		Msg("codi2 ready")
	if b.Embedded() && cfg.Auth {
		log.Info().Str("auth", filepath.Join(srv.DataDir(), "auth")).Msg("auth on: clients need credentials from `codi2 agent add --data " + srv.DataDir() + "`")
	}
	if b.Embedded() && !cfg.Auth {
		log.Warn().Str("nats", b.ClientURL()).Msg("NATS is open: any local process can act as any agent; run with --auth to require credentials")
	}
	if !(b.Embedded() && cfg.Auth) && !bus.IsLoopback(httpLn.Addr().String()) {
		log.Warn().Str("http", "http://"+httpLn.Addr().String()).Msg("the HTTP API and dashboard are open to every machine that reaches this address: they need a login only with --auth on the embedded NATS server")
	}

	var failure error
	select {
	case <-ctx.Done():
	case <-srv.Failed():
	case err := <-httpErr:
		failure = fmt.Errorf("http: %w", err)
	}
	log.Info().Msg("codi2 shutting down")
	// Shutdown order: the server's own order (the services commit, ack and
	// hand their subjects to the 503 stand-in, their connections close, the
	// bus drains and NATS shuts down, the stores close), then the HTTP
	// server, which reports "stopping" meanwhile.
	err = errors.Join(failure, srv.Stop())
	if failure == nil {
		stopHTTP()
	}
	log.Info().Msg("codi2 stopped")
	return err
}

// websocketURL is the address of the embedded server's WebSocket
// listener, or "" when it has none.
func websocketURL(b *bus.Bus, listen string) string {
	if listen == "" || !b.Embedded() {
		return ""
	}
	return b.Server().WebsocketURL()
}

// health serves /healthz and /readyz, and hands every other path to the
// server's HTTP API (httpapi): 503 "starting" until srv is set.
type health struct {
	srv atomic.Pointer[server.Server]
}

func (h *health) handler() http.Handler {
	mux := http.NewServeMux()
	write := func(w http.ResponseWriter, ok bool, body map[string]any) {
		w.Header().Set("Content-Type", "application/json")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(body)
	}
	// /healthz: the process is alive and can do its work: connected to
	// NATS, and every stream can write.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		srv := h.srv.Load()
		if srv == nil {
			write(w, false, map[string]any{"status": "starting", "version": versionString()})
			return
		}
		b := srv.Bus()
		status := map[string]any{"status": "ok", "nats": b.ClientURL(), "version": versionString()}
		var problems []string
		if !b.Conn().IsConnected() {
			problems = append(problems, "nats disconnected")
		}
		problems = append(problems, b.StorageProblems()...)
		if len(problems) > 0 {
			status["status"] = strings.Join(problems, "; ")
			status["problems"] = problems
		}
		write(w, len(problems) == 0, status)
	})
	// /readyz: streams present, services consuming, lag bounded.
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		srv := h.srv.Load()
		if srv == nil {
			write(w, false, map[string]any{"ready": false, "phase": "starting", "problems": []string{"codi2 is starting"}})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		rd := srv.Readiness(ctx)
		problems := rd.Problems
		if problems == nil {
			problems = []string{} // [] when ready, not null: a list either way
		}
		write(w, rd.Ready, map[string]any{"ready": rd.Ready, "phase": rd.Phase, "problems": problems})
	})
	// The API, the feed, /metrics and the dashboard.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		srv := h.srv.Load()
		if srv == nil {
			write(w, false, map[string]any{"error": "codi2 is starting", "code": http.StatusServiceUnavailable})
			return
		}
		srv.HTTP().ServeHTTP(w, r)
	})
	return mux
}
