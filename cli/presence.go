package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/codi2/codi2/state"
)

// DefaultPresenceTTL is how long a heartbeat keeps an agent present unless
// --ttl says otherwise: what is bound to the presence is released that
// long after the agent's last heartbeat.
const DefaultPresenceTTL = 5 * time.Minute

func (e *env) heartbeatCmd() *cobra.Command {
	var (
		ttl  time.Duration
		task string
		stop bool
	)
	cmd := &cobra.Command{
		Use:   "heartbeat",
		Short: "keep this agent's presence alive (--ttl, --task)",
		Long: `Keep --agent present for --ttl from now: the record agent/<id> holds the
host, the worktree, the branch and, with --task, the current task. Claims and
reservations made with the CLI are bound to it: when no heartbeat comes for
--ttl they are all released in one transaction, each with its event and audit
record, so a crashed agent's work frees itself. --stop ends the presence now
(signing off), releasing the same way.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := state.CheckTTL(ttl); err != nil {
				return usageError{fmt.Errorf("--%w", err)}
			}
			c, ctx, cancel, err := e.stateCtx(cmd, true)
			if err != nil {
				return err
			}
			defer cancel()
			if stop {
				if err := c.SignOff(ctx); err != nil {
					return err
				}
				return e.out.emit(map[string]any{"agent": c.Agent(), "present": false}, c.Agent()+" signed off")
			}
			fields := map[string]any{"host": hostname()}
			if cwd, err := os.Getwd(); err == nil {
				fields["worktree"] = cwd
				if ws, err := e.workspace(cmd); err == nil {
					fields["worktree"], fields["project"] = ws.repo.Root, ws.project
				}
				if b := gitBranch(ctx, cwd); b != "" {
					fields["branch"] = b
				}
			}
			if cmd.Flags().Changed("task") {
				fields["task"] = task
				if task == "" {
					fields["task"] = nil
				}
			}
			rec, err := c.Heartbeat(ctx, ttl, fields)
			if err != nil {
				return err
			}
			return e.out.emit(rec, "present "+RecordText(rec))
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", DefaultPresenceTTL, "how long this heartbeat keeps the agent present")
	cmd.Flags().StringVar(&task, "task", "", `the task being worked on ("" clears it)`)
	cmd.Flags().BoolVar(&stop, "stop", false, "end the presence now, releasing what is bound to it")
	return cmd
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "unknown"
	}
	return h
}

// gitBranch is the branch checked out in dir, or "" outside a repository.
func gitBranch(ctx context.Context, dir string) string {
	cmd := exec.CommandContext(ctx, "git", "rev-parse", "--abbrev-ref", "HEAD")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// presenceJSON is one live agent as who --json prints it.
type presenceJSON struct {
	Agent         string            `json:"agent"`
	LastHeartbeat time.Time         `json:"last_heartbeat"`
	ExpiresAt     *time.Time        `json:"expires_at"`
	Fields        map[string]any    `json:"fields"`
	Claims        []claimJSON       `json:"claims"`
	Reservations  []reservationJSON `json:"reservations"`
}

type claimJSON struct {
	Kind      string     `json:"kind"`
	ID        string     `json:"id"`
	Rev       uint64     `json:"rev"`
	ExpiresAt *time.Time `json:"expires_at"`
}

func (e *env) whoCmd() *cobra.Command {
	var kinds []string
	cmd := &cobra.Command{
		Use:   "who",
		Short: "live agents, their last heartbeat and what each holds",
		Long: `List the agents whose presence is live (see heartbeat): when each last beat,
until when it stays, its host, branch and task, the records of --kind (task by
default) whose holder it is, and its reservations in this project (when the
working directory is in a repository, or --project is given). --agent given on
the command line lists only that agent (CODI2_AGENT does not filter), as for
reservations.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, cancel, err := e.stateCtx(cmd, false)
			if err != nil {
				return err
			}
			defer cancel()
			now := e.io.Now()
			agents, err := listAll(ctx, c, state.KindAgent)
			if err != nil {
				return err
			}
			claims := map[string][]claimJSON{}
			for _, k := range kinds {
				recs, err := listAll(ctx, c, k)
				if err != nil {
					return err
				}
				for _, r := range recs {
					if h := r.Holder(); h != "" && r.ExpiresAt.After(now) {
						claims[h] = append(claims[h], claimJSON{Kind: r.Kind, ID: r.ID, Rev: r.Rev, ExpiresAt: r.ExpiresAt})
					}
				}
			}
			reserved := map[string][]reservationJSON{}
			if ws, err := e.workspace(cmd); err == nil {
				held, err := c.Reservations(ctx, ws.project, "", "")
				if err != nil {
					return err
				}
				for _, h := range held {
					reserved[h.Holder] = append(reserved[h.Holder], heldJSON(h))
				}
			}
			only := ""
			if e.agentFlag {
				if only, err = e.me(); err != nil {
					return err
				}
			}
			n := 0
			for _, a := range agents {
				if a.ExpiresAt != nil && !a.ExpiresAt.After(now) || only != "" && a.ID != only {
					continue
				}
				n++
				p := presenceJSON{Agent: a.ID, LastHeartbeat: a.UpdatedAt, ExpiresAt: a.ExpiresAt, Fields: map[string]any{},
					Claims: append([]claimJSON{}, claims[a.ID]...), Reservations: append([]reservationJSON{}, reserved[a.ID]...)}
				for k := range a.Fields {
					var v any
					_ = a.Field(k, &v)
					p.Fields[k] = v
				}
				if err := e.out.emit(p, presenceText(p, now)); err != nil {
					return err
				}
			}
			switch {
			case n > 0 || e.g.json:
			case only != "":
				_, err = fmt.Fprintf(e.io.Out, "%s is not live (no presence: codi2 heartbeat starts one)\n", only)
			default:
				_, err = fmt.Fprintln(e.io.Out, "no live agents")
			}
			return err
		},
	}
	cmd.Flags().StringSliceVar(&kinds, "kind", []string{"task"}, "kinds whose held records to show")
	return cmd
}

// presenceText is one live agent in a few lines.
func presenceText(p presenceJSON, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s last heartbeat %s ago", p.Agent, now.Sub(p.LastHeartbeat).Round(time.Second))
	if p.ExpiresAt != nil {
		fmt.Fprintf(&b, ", present until %s", p.ExpiresAt.UTC().Format(time.RFC3339))
	}
	keys := make([]string, 0, len(p.Fields))
	for k := range p.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%s", clean(k), clean(fmt.Sprint(p.Fields[k])))
	}
	for _, c := range p.Claims {
		fmt.Fprintf(&b, "\n  holds %s/%s rev %d", c.Kind, clean(unescaped(c.ID)), c.Rev)
		if c.ExpiresAt != nil {
			fmt.Fprintf(&b, " until %s", c.ExpiresAt.UTC().Format(time.RFC3339))
		}
	}
	for _, r := range p.Reservations {
		mode := "exclusive"
		if r.Shared {
			mode = "shared"
		}
		fmt.Fprintf(&b, "\n  reserves %s (%s, rev %d)", clean(r.Pattern), mode, r.Rev)
		if r.ExpiresAt != nil {
			fmt.Fprintf(&b, " until %s", r.ExpiresAt.UTC().Format(time.RFC3339))
		}
	}
	return b.String()
}

// listAll reads every record of kind, page by page.
func listAll(ctx context.Context, c *state.Client, kind string) ([]state.Record, error) {
	var out []state.Record
	opts := state.ListOptions{Limit: 1000}
	for {
		page, err := c.List(ctx, kind, opts)
		if err != nil {
			return nil, err
		}
		out = append(out, page.Records...)
		if page.NextAfter == "" {
			return out, nil
		}
		opts.After = page.NextAfter
	}
}
