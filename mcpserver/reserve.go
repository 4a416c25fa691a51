package mcpserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/codi2/codi2/cli"
	"github.com/codi2/codi2/internal/repo"
	"github.com/codi2/codi2/state"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Reservation and presence tool inputs.
type (
	reserveIn struct {
		Patterns []string `json:"patterns" jsonschema:"paths or globs, relative to your directory"`
		TTL      string   `json:"ttl,omitempty" jsonschema:"default 30m"`
		Shared   bool     `json:"shared,omitempty"`
		Reason   string   `json:"reason,omitempty"`
	}
	unreserveIn struct {
		Patterns []string `json:"patterns,omitempty" jsonschema:"as reserved"`
		All      bool     `json:"all,omitempty"`
	}
	reservationsIn struct {
		Path  string `json:"path,omitempty" jsonschema:"only those covering this file"`
		Agent string `json:"agent,omitempty"`
	}
	whoIn struct{}
)

// where is the repository the server works in (Config.Dir): its root ("" when
// Dir is not in a git work tree) and the project (Config.Project, or the
// repository's).
func (s *Server) where(ctx context.Context) (repo.Repo, error) {
	r, err := repo.Find(ctx, s.cfg.Dir)
	if s.cfg.Project != "" {
		r.Project = s.cfg.Project
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("no project for reservations: %w; start codi2 mcp in the repository or pass --project", err)
	}
	return r, nil
}

// pattern normalizes p, typed relative to Config.Dir, to a pattern relative
// to the repository root. Outside a repository there is no root to be
// relative to, so nothing can be reserved there (two servers in different
// directories would read one path two ways).
func (s *Server) pattern(r repo.Repo, p string) (string, error) {
	if r.Root == "" {
		return "", fmt.Errorf("%s is not in a git repository: patterns are relative to a repository root", s.cfg.Dir)
	}
	return r.Pattern(s.cfg.Dir, p)
}

// path is the file p, typed relative to Config.Dir, relative to the
// repository root, with no wildcard read in it.
func (s *Server) path(r repo.Repo, p string) (string, error) {
	if r.Root == "" {
		return "", fmt.Errorf("%s is not in a git repository: paths are relative to a repository root", s.cfg.Dir)
	}
	return r.Path(s.cfg.Dir, p)
}

// overlap words a refused reservation so that the model knows who holds
// what until when, and what to do next.
func overlap(err error) error {
	var ce *state.ConflictError
	if !errors.As(err, &ce) || ce.Event.Overlap == nil {
		return err
	}
	o := ce.Event.Overlap
	kind := "reservation"
	if o.Shared {
		kind = "shared reservation"
	}
	return fmt.Errorf("%s overlaps %s's %s %s%s; nothing was reserved. Ask %s with the send tool or pick other files",
		o.Path, o.Holder, kind, o.Pattern, until(o.ExpiresAt), o.Holder)
}

func until(t *time.Time) string {
	if t == nil {
		return ""
	}
	return " until " + t.UTC().Format(time.RFC3339)
}

func (s *Server) addReservationTools() {
	mcp.AddTool(s.mcp, &mcp.Tool{Name: "reserve", Description: "Reserve files or globs for yourself, all or none, while you are live."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in reserveIn) (*mcp.CallToolResult, any, error) {
			ttl, err := parseTTL(in.TTL, cli.DefaultReserveTTL)
			if err != nil {
				return nil, nil, err
			}
			if len(in.Patterns) == 0 {
				return nil, nil, errors.New("patterns: give at least one path or glob")
			}
			ctx, cancel := s.ctx(ctx)
			defer cancel()
			r, err := s.where(ctx)
			if err != nil {
				return nil, nil, err
			}
			pats := make([]string, len(in.Patterns))
			for i, p := range in.Patterns {
				if pats[i], err = s.pattern(r, p); err != nil {
					return nil, nil, err
				}
			}
			recs, err := s.state.Reserve(ctx, r.Project, pats, state.ReserveOptions{TTL: ttl, Shared: in.Shared, Reason: in.Reason, Bind: true})
			if err != nil {
				return nil, nil, overlap(err)
			}
			kind := "exclusive"
			if in.Shared {
				kind = "shared"
			}
			var exp *time.Time
			if len(recs) > 0 {
				exp = recs[0].ExpiresAt
			}
			return text(fmt.Sprintf("reserved %s%s (%s; released when your presence ends)", strings.Join(dedupe(pats), ", "), until(exp), kind)), nil, nil
		})
	mcp.AddTool(s.mcp, &mcp.Tool{Name: "unreserve", Description: "Release your reservations: the patterns as reserved, or all."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in unreserveIn) (*mcp.CallToolResult, any, error) {
			if len(in.Patterns) == 0 && !in.All {
				return nil, nil, errors.New("give patterns, or all: true")
			}
			ctx, cancel := s.ctx(ctx)
			defer cancel()
			r, err := s.where(ctx)
			if err != nil {
				return nil, nil, err
			}
			if in.All {
				done, err := s.state.UnreserveAll(ctx, r.Project)
				if err != nil {
					return nil, nil, err
				}
				if len(done) == 0 {
					return text("you held no reservations"), nil, nil
				}
				return text("released " + strings.Join(done, ", ")), nil, nil
			}
			pats := make([]string, len(in.Patterns))
			for i, p := range in.Patterns {
				if pats[i], err = s.pattern(r, p); err != nil {
					return nil, nil, err
				}
			}
			if pats, err = cli.UnreserveAsTyped(ctx, s.state, r, s.cfg.Dir, r.Project, in.Patterns, pats); err != nil {
				return nil, nil, err
			}
			return text("released " + strings.Join(dedupe(pats), ", ")), nil, nil
		})
	mcp.AddTool(s.mcp, &mcp.Tool{Name: "reservations", Description: "List live file reservations."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in reservationsIn) (*mcp.CallToolResult, any, error) {
			ctx, cancel := s.ctx(ctx)
			defer cancel()
			r, err := s.where(ctx)
			if err != nil {
				return nil, nil, err
			}
			path := ""
			if in.Path != "" {
				if path, err = s.path(r, in.Path); err != nil {
					return nil, nil, err
				}
			}
			held, err := s.state.Reservations(ctx, r.Project, in.Agent, path)
			if err != nil {
				return nil, nil, err
			}
			lines := make([]string, len(held))
			for i, h := range held {
				lines[i] = cli.ReservationText(h)
			}
			return text(lines...), nil, nil
		})
	mcp.AddTool(s.mcp, &mcp.Tool{Name: "who", Description: "Live agents and what each holds."},
		func(ctx context.Context, _ *mcp.CallToolRequest, _ whoIn) (*mcp.CallToolResult, any, error) {
			ctx, cancel := s.ctx(ctx)
			defer cancel()
			lines, err := s.who(ctx)
			if err != nil {
				return nil, nil, err
			}
			return text(lines...), nil, nil
		})
}

// who lists the live agents (presence records), each with its last
// heartbeat, the end of its presence and what it holds: reservations in the
// project (when the server knows one) and task claims. An agent that holds
// something without a live presence is listed too, as such.
func (s *Server) who(ctx context.Context) ([]string, error) {
	type agent struct {
		seen, until *time.Time
		res, tasks  []string
	}
	agents := map[string]*agent{}
	get := func(id string) *agent {
		if agents[id] == nil {
			agents[id] = &agent{}
		}
		return agents[id]
	}
	now := time.Now()
	err := s.each(ctx, state.KindAgent, func(r state.Record) {
		if r.ExpiresAt != nil && r.ExpiresAt.After(now) {
			a := get(r.ID)
			a.seen, a.until = &r.UpdatedAt, r.ExpiresAt
		}
	})
	if err != nil {
		return nil, err
	}
	if r, err := s.where(ctx); err == nil {
		held, err := s.state.Reservations(ctx, r.Project, "", "")
		if err != nil {
			return nil, err
		}
		for _, h := range held {
			a := get(h.Holder)
			a.res = append(a.res, h.Pattern)
		}
	}
	err = s.each(ctx, "task", func(r state.Record) {
		if h := r.Holder(); h != "" && r.ExpiresAt.After(now) {
			a := get(h)
			a.tasks = append(a.tasks, r.ID)
		}
	})
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(agents))
	for id := range agents {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	lines := make([]string, len(ids))
	for i, id := range ids {
		a := agents[id]
		line := id + " (not live)"
		if a.seen != nil {
			line = fmt.Sprintf("%s (seen %s, live%s)", id, a.seen.UTC().Format(time.RFC3339), until(a.until))
		}
		var held []string
		if len(a.res) > 0 {
			held = append(held, "reserves "+strings.Join(a.res, ", "))
		}
		if len(a.tasks) > 0 {
			held = append(held, "tasks "+strings.Join(a.tasks, ", "))
		}
		if len(held) > 0 {
			line += ": " + strings.Join(held, "; ")
		}
		lines[i] = line
	}
	return lines, nil
}

// each calls fn for every record of kind, page by page.
func (s *Server) each(ctx context.Context, kind string, fn func(state.Record)) error {
	opts := state.ListOptions{Limit: 1000}
	for {
		page, err := s.state.List(ctx, kind, opts)
		if err != nil {
			return err
		}
		for _, r := range page.Records {
			fn(r)
		}
		if page.NextAfter == "" {
			return nil
		}
		opts.After = page.NextAfter
	}
}

func dedupe(ss []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// KeepPresent keeps the agent's presence alive until ctx is done: a
// heartbeat at once and every Config.PresenceTTL/3, with the host, the
// directory and "via": "mcp" as fields; then it signs off (ending the
// presence releases what is bound to it: the reservations the reserve tool
// took). A heartbeat that fails is logged and retried at the next tick.
// Run calls it; an HTTP server calls it beside its handler. The first
// heartbeat is done when ready is closed (nil: not told), so that a who
// right after the session starts lists this agent.
func (s *Server) KeepPresent(ctx context.Context, ready chan<- struct{}) {
	fields := map[string]any{"via": "mcp", "worktree": s.cfg.Dir}
	if host, err := os.Hostname(); err == nil {
		fields["host"] = host
	}
	beat := func() {
		hctx, cancel := s.ctx(ctx)
		defer cancel()
		if _, err := s.state.Heartbeat(hctx, s.cfg.PresenceTTL, fields); err != nil && ctx.Err() == nil {
			s.cfg.Log.Warn().Err(err).Str("agent", s.cfg.Agent).Msg("presence heartbeat")
		}
	}
	beat()
	if ready != nil {
		close(ready)
	}
	tick := time.NewTicker(s.cfg.PresenceTTL / 3)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			beat()
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Timeout)
			defer cancel()
			if err := s.state.SignOff(sctx); err != nil && !errors.Is(err, state.ErrNotFound) {
				s.cfg.Log.Warn().Err(err).Str("agent", s.cfg.Agent).Msg("presence sign-off")
			}
			return
		}
	}
}
