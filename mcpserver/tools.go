package mcpserver

import (
	"context"
	"fmt"
	"time"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/cli"
	"github.com/codi2/codi2/internal/timeparse"
	"github.com/codi2/codi2/state"
	"github.com/codi2/codi2/subjects"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Tool inputs. Descriptions are short on purpose: a model reads the tool
// list on every turn (TestToolsList_Size keeps it small).
type (
	sendIn struct {
		To         string `json:"to" jsonschema:"agent id, or all"`
		Type       string `json:"type" jsonschema:"e.g. task.assign"`
		Data       string `json:"data,omitempty"`
		Importance string `json:"importance,omitempty" jsonschema:"low|normal|high|urgent"`
		Thread     string `json:"thread,omitempty"`
	}
	inboxIn struct {
		Max int `json:"max,omitempty" jsonschema:"at most this many (default 20)"`
	}
	claimIn struct {
		Kind   string         `json:"kind" jsonschema:"e.g. task"`
		ID     string         `json:"id"`
		TTL    string         `json:"ttl,omitempty" jsonschema:"lease, default 15m"`
		Fields map[string]any `json:"fields,omitempty"`
	}
	renewIn struct {
		Kind string `json:"kind"`
		ID   string `json:"id"`
		Rev  uint64 `json:"rev" jsonschema:"rev your claim returned"`
		TTL  string `json:"ttl,omitempty"`
	}
	releaseIn struct {
		Kind   string `json:"kind"`
		ID     string `json:"id"`
		Rev    uint64 `json:"rev"`
		Delete bool   `json:"delete,omitempty" jsonschema:"remove the record too"`
	}
	logIn struct {
		Category string `json:"category" jsonschema:"e.g. decision"`
		Data     string `json:"data"`
	}
	historyIn struct {
		Since    string `json:"since,omitempty" jsonschema:"e.g. 1h"`
		Source   string `json:"source,omitempty"`
		Category string `json:"category,omitempty"`
		Limit    int    `json:"limit,omitempty" jsonschema:"default 20"`
	}
	stateIn struct {
		Kind   string `json:"kind"`
		ID     string `json:"id,omitempty" jsonschema:"omit to list the kind"`
		Prefix string `json:"prefix,omitempty"`
		Limit  int    `json:"limit,omitempty" jsonschema:"default 20"`
	}
)

func (s *Server) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.Timeout)
}

// lease runs one lease operation on kind/id and answers with the line it
// returns; a lost race is a tool error naming the holder.
func (s *Server) lease(ctx context.Context, kind, id string,
	op func(ctx context.Context, kind, id string) (string, error)) (*mcp.CallToolResult, any, error) {
	kind, id, err := ids(kind, id)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	line, err := op(ctx, kind, id)
	if err != nil {
		return nil, nil, s.conflict(ctx, kind, id, err)
	}
	return text(line), nil, nil
}

func (s *Server) addTools() {
	mcp.AddTool(s.mcp, &mcp.Tool{Name: "send", Description: "Send a durable message to an agent or all."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in sendIn) (*mcp.CallToolResult, any, error) {
			var opts []bus.SendOption
			if in.Importance != "" {
				opts = append(opts, bus.WithHeader(cli.HeaderImportance, in.Importance))
			}
			if in.Thread != "" {
				opts = append(opts, bus.WithHeader(cli.HeaderThread, in.Thread))
			}
			ctx, cancel := s.ctx(ctx)
			defer cancel()
			ack, err := s.agent.Send(ctx, in.To, in.Type, []byte(in.Data), opts...)
			if err != nil {
				return nil, nil, err
			}
			return text(fmt.Sprintf("sent #%d to %s", ack.Sequence, in.To)), nil, nil
		})
	mcp.AddTool(s.mcp, &mcp.Tool{Name: "inbox", Description: "Fetch and acknowledge your pending messages, oldest first."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in inboxIn) (*mcp.CallToolResult, any, error) {
			var lines []string
			err := s.agent.Receive(ctx, bus.ReceiveConfig{UntilIdle: true, Max: max0(in.Max, 20)},
				func(_ context.Context, m bus.Message) error {
					lines = append(lines, cli.MailOf(m).Text())
					return nil
				})
			if err != nil {
				return nil, nil, err
			}
			return text(lines...), nil, nil
		})
	mcp.AddTool(s.mcp, &mcp.Tool{Name: "claim", Description: "Lease a record (a task, a file) if nobody holds it. Returns rev, the fencing token."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in claimIn) (*mcp.CallToolResult, any, error) {
			ttl, err := parseTTL(in.TTL, cli.DefaultClaimTTL)
			if err != nil {
				return nil, nil, err
			}
			return s.lease(ctx, in.Kind, in.ID, func(ctx context.Context, kind, id string) (string, error) {
				rec, err := s.state.Claim(ctx, kind, id, ttl, in.Fields)
				return "claimed " + cli.RecordText(rec), err
			})
		})
	mcp.AddTool(s.mcp, &mcp.Tool{Name: "renew", Description: "Extend your lease at rev."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in renewIn) (*mcp.CallToolResult, any, error) {
			ttl, err := parseTTL(in.TTL, cli.DefaultClaimTTL)
			if err != nil {
				return nil, nil, err
			}
			return s.lease(ctx, in.Kind, in.ID, func(ctx context.Context, kind, id string) (string, error) {
				rec, err := s.state.Refresh(ctx, kind, id, in.Rev, ttl)
				return "renewed " + cli.RecordText(rec), err
			})
		})
	mcp.AddTool(s.mcp, &mcp.Tool{Name: "release", Description: "End your lease at rev; the record stays."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in releaseIn) (*mcp.CallToolResult, any, error) {
			return s.lease(ctx, in.Kind, in.ID, func(ctx context.Context, kind, id string) (string, error) {
				if in.Delete {
					return "deleted " + kind + "/" + in.ID, s.state.ReleaseDelete(ctx, kind, id, in.Rev)
				}
				rec, err := s.state.Release(ctx, kind, id, in.Rev)
				return "released " + cli.RecordText(rec), err
			})
		})
	mcp.AddTool(s.mcp, &mcp.Tool{Name: "log", Description: "Record an audit event (a decision, a note)."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in logIn) (*mcp.CallToolResult, any, error) {
			ctx, cancel := s.ctx(ctx)
			defer cancel()
			ack, err := s.audit.Log(ctx, s.cfg.Agent, in.Category, []byte(in.Data))
			if err != nil {
				return nil, nil, err
			}
			return text(fmt.Sprintf("logged #%d", ack.Sequence)), nil, nil
		})
	mcp.AddTool(s.mcp, &mcp.Tool{Name: "history", Description: "Search the audit log, oldest first."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in historyIn) (*mcp.CallToolResult, any, error) {
			q := audit.Query{Source: in.Source, Category: in.Category, Limit: max0(in.Limit, 20)}
			if in.Since != "" {
				t, err := timeparse.Parse(in.Since, time.Now())
				if err != nil {
					return nil, nil, err
				}
				q.From = t
			}
			ctx, cancel := s.ctx(ctx)
			defer cancel()
			page, err := s.audit.Query(ctx, q)
			if err != nil {
				return nil, nil, err
			}
			lines := make([]string, len(page.Records))
			for i, r := range page.Records {
				lines[i] = cli.HistoryText(r)
			}
			return text(lines...), nil, nil
		})
	mcp.AddTool(s.mcp, &mcp.Tool{Name: "state", Description: "Read a record, or list a kind's records."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in stateIn) (*mcp.CallToolResult, any, error) {
			ctx, cancel := s.ctx(ctx)
			defer cancel()
			if in.ID != "" {
				kind, id, err := ids(in.Kind, in.ID)
				if err != nil {
					return nil, nil, err
				}
				rec, err := s.state.Get(ctx, kind, id, 0)
				if err != nil {
					return nil, nil, err
				}
				return text(cli.RecordText(rec)), nil, nil
			}
			kind, _, err := ids(in.Kind, "x")
			if err != nil {
				return nil, nil, err
			}
			page, err := s.state.List(ctx, kind, state.ListOptions{Prefix: subjects.Escape(in.Prefix), Limit: max0(in.Limit, 20)})
			if err != nil {
				return nil, nil, err
			}
			lines := make([]string, len(page.Records))
			for i, r := range page.Records {
				lines[i] = cli.RecordText(r)
			}
			return text(lines...), nil, nil
		})
}

func max0(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}
