// Package mcpserver is codi2's Model Context Protocol server: one agent's
// mail, claims, file reservations, presence, audit log and state as MCP
// tools, built with the official
// Go SDK on the public clients bus.Agent, state.Client and audit.Client. It
// tells the session about new mail as it arrives (see Notify).
package mcpserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/cli"
	"github.com/codi2/codi2/state"
	"github.com/codi2/codi2/subjects"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// InboxURI is the resource that holds the agent's pending mail; the server
// sends notifications/resources/updated for it when mail arrives.
const InboxURI = "codi2://inbox"

// ChannelMethod is Claude Code's channel notification (its channels
// reference: capability experimental "claude/channel", params content and
// meta), the one push that reaches a live Claude Code session's context.
const ChannelMethod = "notifications/claude/channel"

// Config configures a Server.
type Config struct {
	// Agent is the agent id the tools act as. Required.
	Agent string
	// Timeout bounds each request a tool makes. Default cli.DefaultTimeout.
	Timeout time.Duration
	// Version is reported to the client. Default "dev".
	Version string
	// Log receives what the server does besides answering: mail
	// notifications and heartbeats that failed. Default: none.
	Log zerolog.Logger
	// Dir is the directory paths given to the reservation tools are
	// relative to, and whose git repository names the project. Default:
	// the working directory.
	Dir string
	// Project overrides the project name derived from Dir's repository.
	Project string
	// PresenceTTL is the presence each heartbeat gives the agent while Run
	// runs (every PresenceTTL/3). Default DefaultPresenceTTL.
	PresenceTTL time.Duration
}

// DefaultPresenceTTL is the presence the MCP server keeps alive: a server
// that stops heartbeating (killed) leaves the agent live at most this long.
const DefaultPresenceTTL = time.Minute

// Validate fills defaults and reports a bad configuration.
func (c *Config) Validate() error {
	if c.Timeout <= 0 {
		c.Timeout = cli.DefaultTimeout
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.PresenceTTL <= 0 {
		c.PresenceTTL = DefaultPresenceTTL
	}
	if c.Dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return fmt.Errorf("mcpserver: working directory: %w", err)
		}
		c.Dir = wd
	}
	if err := subjects.ValidAgent(c.Agent); err != nil {
		return fmt.Errorf("mcpserver: agent %q: %w", c.Agent, err)
	}
	return nil
}

// Server is one agent's MCP server over a NATS connection it does not own.
// Safe for concurrent use.
type Server struct {
	cfg   Config
	nc    *nats.Conn
	agent *bus.Agent
	state *state.Client
	audit *audit.Client
	mcp   *mcp.Server

	mu    sync.Mutex
	conns []*notifyConn // connections that take channel notifications
}

// whileConnected answers a tool call at once, as a tool error saying so,
// while the connection to codi2 is down (it reconnects on its own), instead
// of letting the call wait out Config.Timeout and fail with a timeout of
// some internal subject.
func (s *Server) whileConnected(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		if method != "tools/call" || s.nc.IsConnected() {
			return next(ctx, method, req)
		}
		url := strings.Join(s.nc.Servers(), ", ")
		msg := fmt.Sprintf("codi2 is unreachable at %s (reconnecting; try again shortly)", url)
		if s.nc.IsClosed() {
			msg = fmt.Sprintf("the connection to codi2 at %s is closed; restart the MCP server", url)
		}
		return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: msg}}}, nil
	}
}

// New returns the server for cfg.Agent over nc.
func New(cfg Config, nc *nats.Conn) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a, err := bus.NewAgent(cfg.Agent, nc)
	if err != nil {
		return nil, err
	}
	sc, err := state.NewClient(nc, cfg.Agent)
	if err != nil {
		return nil, err
	}
	ac, err := audit.NewClient(nc)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, nc: nc, agent: a, state: sc, audit: ac}
	s.mcp = mcp.NewServer(&mcp.Implementation{Name: "codi2", Version: cfg.Version}, &mcp.ServerOptions{
		Instructions: "codi2 coordinates you with other agents as " + cfg.Agent +
			": check inbox, claim work before starting it, reserve files before editing them, release both when done.",
		Capabilities: &mcp.ServerCapabilities{
			Logging:      &mcp.LoggingCapabilities{},
			Tools:        &mcp.ToolCapabilities{},
			Resources:    &mcp.ResourceCapabilities{Subscribe: true},
			Experimental: map[string]any{"claude/channel": map[string]any{}},
		},
		SubscribeHandler:   func(context.Context, *mcp.SubscribeRequest) error { return nil },
		UnsubscribeHandler: func(context.Context, *mcp.UnsubscribeRequest) error { return nil },
	})
	s.addTools()
	s.addReservationTools()
	s.mcp.AddReceivingMiddleware(s.whileConnected)
	s.mcp.AddResource(&mcp.Resource{URI: InboxURI, Name: "inbox", Description: "pending mail (read with the inbox tool)", MIMEType: "text/plain"},
		s.readInbox)
	return s, nil
}

// MCP is the SDK server, for tests that connect it to an in-memory
// transport.
func (s *Server) MCP() *mcp.Server { return s.mcp }

// Close releases the audit client.
func (s *Server) Close() error { return s.audit.Close() }

// Run serves one session on t (stdio, usually) until ctx is done or the
// client goes away, telling the session about new mail as it arrives and
// keeping the agent's presence alive (KeepPresent: it signs off when Run
// returns).
func (s *Server) Run(ctx context.Context, t mcp.Transport) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in, err := s.agent.Subscribe(func(m bus.Message) { s.Notify(ctx, m) })
	if err != nil {
		return fmt.Errorf("mcpserver: mail notifications: %w", err)
	}
	defer func() { _ = in.Unsubscribe(); <-in.Done() }()
	present, ready := make(chan struct{}), make(chan struct{})
	go func() { defer close(present); s.KeepPresent(ctx, ready) }()
	defer func() { cancel(); <-present }()
	select { // present before the first tool call can ask who is
	case <-ready:
	case <-ctx.Done():
	}
	err = s.mcp.Run(ctx, &notifyTransport{t: t, s: s})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Notify tells every session that m arrived, three ways, since clients
// differ in what they show: a logging notification (notifications/message),
// notifications/resources/updated for InboxURI, and Claude Code's channel
// notification with a one-line summary as content. The mail stays in the
// inbox until the inbox tool fetches it.
func (s *Server) Notify(ctx context.Context, m bus.Message) {
	line := fmt.Sprintf("new mail for %s from %s: %s (fetch it with the inbox tool)", m.To, m.From, m.Type)
	for ss := range s.mcp.Sessions() {
		if err := ss.Log(ctx, &mcp.LoggingMessageParams{Level: "notice", Logger: "codi2", Data: line}); err != nil {
			s.cfg.Log.Debug().Err(err).Msg("mail logging notification")
		}
	}
	if err := s.mcp.ResourceUpdated(ctx, &mcp.ResourceUpdatedNotificationParams{URI: InboxURI}); err != nil {
		s.cfg.Log.Debug().Err(err).Msg("inbox resource notification")
	}
	params, _ := json.Marshal(map[string]any{"content": line, "meta": map[string]string{"from": m.From, "type": m.Type, "to": m.To}})
	s.mu.Lock()
	conns := append([]*notifyConn(nil), s.conns...)
	s.mu.Unlock()
	for _, c := range conns {
		if err := c.Connection.Write(ctx, &jsonrpc.Request{Method: ChannelMethod, Params: params}); err != nil {
			s.cfg.Log.Debug().Err(err).Msg("channel notification")
		}
	}
}

// notifyTransport wraps a transport so that the server can write Claude
// Code's channel notification, which the SDK has no call for.
type notifyTransport struct {
	t mcp.Transport
	s *Server
}

func (n *notifyTransport) Connect(ctx context.Context) (mcp.Connection, error) {
	c, err := n.t.Connect(ctx)
	if err != nil {
		return nil, err
	}
	nc := &notifyConn{Connection: c, s: n.s}
	n.s.mu.Lock()
	n.s.conns = append(n.s.conns, nc)
	n.s.mu.Unlock()
	return nc, nil
}

type notifyConn struct {
	mcp.Connection
	s *Server
}

func (c *notifyConn) Close() error {
	c.s.mu.Lock()
	for i, x := range c.s.conns {
		if x == c {
			c.s.conns = append(c.s.conns[:i], c.s.conns[i+1:]...)
			break
		}
	}
	c.s.mu.Unlock()
	return c.Connection.Close()
}

func (s *Server) readInbox(ctx context.Context, _ *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	msgs, err := s.agent.Peek(ctx, 100)
	if err != nil {
		return nil, err
	}
	lines := make([]string, len(msgs))
	for i, m := range msgs {
		lines[i] = cli.MailOf(m).Text()
	}
	return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: InboxURI, MIMEType: "text/plain", Text: strings.Join(lines, "\n")}}}, nil
}

// text is a tool's answer: the lines, or "none" when there are none.
func text(lines ...string) *mcp.CallToolResult {
	out := strings.Join(lines, "\n")
	if out == "" {
		out = "none"
	}
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: out}}}
}

func parseTTL(s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("ttl %q: want a positive duration such as 15m", s)
	}
	return d, state.CheckTTL(d)
}

func ids(kind, id string) (string, string, error) {
	if err := subjects.ValidKind(kind); err != nil {
		return "", "", fmt.Errorf("kind %q: %w", kind, err)
	}
	tok := subjects.Escape(id)
	if err := subjects.ValidToken(tok); err != nil {
		return "", "", fmt.Errorf("id %q: %w", id, err)
	}
	return kind, tok, nil
}

// conflict words a lost claim so that the model knows what to do next.
func (s *Server) conflict(ctx context.Context, kind, id string, err error) error {
	var held *state.HeldError
	if !errors.As(err, &held) {
		if !errors.Is(err, state.ErrConflict) {
			return err
		}
		cur, gerr := s.state.Get(ctx, kind, id, 0)
		if gerr != nil || cur.ExpiresAt == nil {
			return fmt.Errorf("%w; read it with the state tool and retry with its rev", err)
		}
		held = &state.HeldError{Record: cur}
	}
	r := held.Record
	return fmt.Errorf("%s/%s is held by %s (rev %d) until %s; ask them with the send tool or pick other work",
		r.Kind, r.ID, r.Holder(), r.Rev, r.ExpiresAt.UTC().Format(time.RFC3339))
}
