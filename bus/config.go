package bus

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/codi2/codi2/internal/auth"
)

// Defaults applied by Config.Validate to zero fields.
const (
	DefaultListen          = "127.0.0.1:4222"
	DefaultMaxPayload      = 1 << 20
	DefaultStartTimeout    = 10 * time.Second
	DefaultDuplicateWindow = 2 * time.Minute
	DefaultMsgMaxAge       = 7 * 24 * time.Hour
	DefaultStateMaxAge     = 7 * 24 * time.Hour
	DefaultAuditMaxAge     = 7 * 24 * time.Hour
	// DefaultStreamMaxBytes bounds each stream on an external NATS (URL),
	// whose disk codi2 cannot see, and is the most a limit derived from the
	// embedded server's disk grows to.
	DefaultStreamMaxBytes = 10 << 30
	// DefaultInstanceProbeWait is how long Start waits for another instance
	// to answer on an external NATS (see Config.Exclusive).
	DefaultInstanceProbeWait = 100 * time.Millisecond
)

// Config configures Start. The zero value plus a DataDir runs an embedded
// server on DefaultListen.
type Config struct {
	// DataDir holds JetStream's files (under DataDir/jetstream). Required for
	// the embedded server; unused with URL.
	DataDir string
	// Listen is the embedded server's client address, HOST:PORT. Port -1
	// picks a free port. Default DefaultListen.
	Listen string
	// URL, when set, connects to an existing NATS server or cluster instead
	// of running one.
	URL string
	// ServerName names the embedded server. Default "codi2".
	ServerName string
	// MaxPayload is the largest message in bytes. Default DefaultMaxPayload.
	MaxPayload int32
	// StartTimeout bounds the wait for the server to accept connections and
	// for the streams to be created. Default DefaultStartTimeout.
	StartTimeout time.Duration
	// SyncAlways fsyncs every JetStream write before its PubAck. Off by
	// default: see the package documentation.
	SyncAlways bool
	// Replicas is the replica count of the streams; 0 means 1. Use 3 with a
	// three-node cluster (URL).
	Replicas int
	// DuplicateWindow is how long a Nats-Msg-Id is remembered for dedupe.
	DuplicateWindow time.Duration
	// MsgMaxAge, StateMaxAge and AuditMaxAge bound how long each stream keeps
	// messages. The state and audit services copy what they consume into the
	// store, so their streams are buffers; CODI_MSG is mail.
	MsgMaxAge, StateMaxAge, AuditMaxAge time.Duration
	// MsgMaxBytes, StateMaxBytes and AuditMaxBytes bound each stream's size
	// in bytes; past it the oldest messages go first. Zero derives the limit:
	// from the disk that holds DataDir for the embedded server (see
	// DiskLimits), DefaultStreamMaxBytes with URL.
	MsgMaxBytes, StateMaxBytes, AuditMaxBytes int64
	// DeferListen keeps the embedded server's client listener closed after
	// Start (in-process connections work) until Listen, so that the caller
	// can put its responders in place before any client connects. The
	// address is still checked by Start.
	DeferListen bool
	// Exclusive makes this bus the one instance serving the streams: it
	// answers probes on subjects.ServerInstance with Identity, and with URL
	// Start first probes and fails with ErrAnotherInstance when another
	// exclusive bus answers within InstanceProbeWait.
	Exclusive bool
	// Identity describes this process in the answer to a probe.
	Identity Identity
	// InstanceProbeWait bounds the wait for another instance's answer.
	// Default DefaultInstanceProbeWait.
	InstanceProbeWait time.Duration
	// Debug and Trace turn on nats-server's debug and protocol trace logs.
	Debug, Trace bool
	// Auth, when set, makes the embedded server require codi2 credentials
	// issued by this authority and apply each role's permissions (see
	// Permissions); nil leaves it open. The bus's own connections use an
	// internal identity. Not used with URL.
	Auth *auth.Authority
	// Creds is a credentials file for the bus's own connections to URL
	// (an external server with auth). Not used by the embedded server.
	Creds string
	// TLSCert and TLSKey, both set, make the embedded server's client
	// listener require TLS with this certificate and key (PEM files).
	TLSCert, TLSKey string
	// WSListen, when set, opens the embedded server's WebSocket listener
	// on HOST:PORT (port -1 picks one; see Bus.Server().WebsocketURL) for
	// the official NATS WebSocket clients. Not used with URL.
	WSListen string
}

// Validate fills defaults and reports an invalid configuration with an error
// wrapping ErrConfig.
func (c *Config) Validate() error {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.ServerName == "" {
		c.ServerName = "codi2"
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = DefaultMaxPayload
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = DefaultStartTimeout
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.MsgMaxAge == 0 {
		c.MsgMaxAge = DefaultMsgMaxAge
	}
	if c.StateMaxAge == 0 {
		c.StateMaxAge = DefaultStateMaxAge
	}
	if c.AuditMaxAge == 0 {
		c.AuditMaxAge = DefaultAuditMaxAge
	}
	if c.InstanceProbeWait == 0 {
		c.InstanceProbeWait = DefaultInstanceProbeWait
	}
	if c.URL != "" {
		for _, l := range []*int64{&c.MsgMaxBytes, &c.StateMaxBytes, &c.AuditMaxBytes} {
			if *l == 0 {
				*l = DefaultStreamMaxBytes
			}
		}
	}
	switch {
	case c.URL == "" && c.DataDir == "":
		return fmt.Errorf("%w: a data directory is required for the embedded server", ErrConfig)
	case c.MaxPayload < 0 || c.MaxPayload > 64<<20:
		return fmt.Errorf("%w: max payload %d outside 1..64 MiB", ErrConfig, c.MaxPayload)
	case c.Replicas < 1 || c.Replicas > 5:
		return fmt.Errorf("%w: replicas %d outside 1..5", ErrConfig, c.Replicas)
	case c.StartTimeout < 0 || c.DuplicateWindow < 0 || c.MsgMaxAge < 0 || c.StateMaxAge < 0 || c.AuditMaxAge < 0 ||
		c.MsgMaxBytes < 0 || c.StateMaxBytes < 0 || c.AuditMaxBytes < 0 || c.InstanceProbeWait < 0:
		return fmt.Errorf("%w: durations and sizes must be positive", ErrConfig)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return fmt.Errorf("%w: TLS needs both a certificate and a key", ErrConfig)
	}
	if c.URL == "" {
		if _, _, err := splitHostPort(c.Listen); err != nil {
			return fmt.Errorf("%w: listen %q: %v", ErrConfig, c.Listen, err)
		}
	}
	return nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < -1 || port > 65535 {
		return "", 0, fmt.Errorf("port %q is not a number in -1..65535", p)
	}
	return host, port, nil
}
