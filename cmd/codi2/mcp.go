package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/cli"
	"github.com/codi2/codi2/mcpserver"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/nats-io/nats.go"
)

// runMCP serves the MCP server for one agent over stdio (or streamable
// HTTP with --http) until the client goes away or ctx is done.
func runMCP(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("mcp", stderr)
	agent := fs.String("agent", "", "the agent id the tools act as")
	url := fs.String("nats-url", cli.DefaultNATSURL, "the codi2 server")
	creds := fs.String("creds", "", "NATS credentials file")
	timeout := fs.Duration("timeout", cli.DefaultTimeout, "bound on each request a tool makes")
	httpAddr := fs.String("http", "", "serve streamable HTTP on HOST:PORT instead of stdio")
	project := fs.String("project", "", "project name of the reservation tools (default: derived from the repository)")
	presence := fs.Duration("presence-ttl", mcpserver.DefaultPresenceTTL, "the agent's presence, renewed every third of it while the server runs")
	if err := parseWithEnv(fs, args); err != nil {
		return err
	}
	if *agent == "" {
		// The hooks derive an id from the Claude Code session; an MCP
		// server is not told the session, so it cannot.
		return errors.New("mcp: no agent id: set CODI2_AGENT in the environment Claude Code starts with (CODI2_AGENT=agent-2 claude), or pass --agent; the hooks then act as the same agent")
	}
	opts := []nats.Option{nats.Name("codi2 mcp " + *agent), nats.MaxReconnects(-1)}
	if *creds != "" {
		opts = append(opts, bus.Credentials(*creds))
	}
	nc, err := nats.Connect(*url, opts...)
	if err != nil {
		return fmt.Errorf("mcp: cannot reach the codi2 server at %s: %w", *url, err)
	}
	defer nc.Close()
	log, err := newLogger(stderr, "warn", "json")
	if err != nil {
		return err
	}
	s, err := mcpserver.New(mcpserver.Config{Agent: *agent, Timeout: *timeout, Version: versionString(), Log: log,
		Project: *project, PresenceTTL: *presence}, nc)
	if err != nil {
		return err
	}
	defer s.Close()
	if *httpAddr == "" {
		return s.Run(ctx, &mcp.StdioTransport{})
	}
	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		return fmt.Errorf("mcp: --http %s: %w", *httpAddr, err)
	}
	hs := &http.Server{Handler: mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s.MCP() }, nil),
		ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stderr, "codi2 mcp: streamable HTTP on http://%s\n", ln.Addr())
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	})
	defer stop()
	// The presence lasts as long as the HTTP server: it signs off once
	// Serve has returned.
	pctx, cancel := context.WithCancel(ctx)
	present := make(chan struct{})
	go func() { defer close(present); s.KeepPresent(pctx, nil) }()
	defer func() { cancel(); <-present }()
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
