package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/codi2/codi2/internal/repo"
	"github.com/codi2/codi2/state"
)

// DefaultReserveTTL is how long a reservation lasts unless --ttl says
// otherwise.
const DefaultReserveTTL = 30 * time.Minute

// workspace is where reservation verbs resolve paths: the repository of the
// working directory, and the project (--project, else derived from the
// repository).
type workspace struct {
	cwd     string
	repo    repo.Repo
	inRepo  bool
	project string
}

// workspace finds the repository and project of the working directory. In
// a repository without commits --project is required. Outside a repository
// there is no root for paths to be relative to: patterns and paths are
// refused (workspace.patterns), listing works with --project.
func (e *env) workspace(cmd *cobra.Command) (workspace, error) {
	cwd, err := os.Getwd()
	if err != nil {
		return workspace{}, fmt.Errorf("working directory: %w", err)
	}
	ws := workspace{cwd: cwd, project: e.project}
	r, err := repo.Find(cmd.Context(), cwd)
	switch {
	case err == nil:
		ws.repo, ws.inRepo = r, true
	case errors.Is(err, repo.ErrNoCommits):
		ws.repo, ws.inRepo = r, true // paths relative to its root; the project must be given
	}
	if ws.project == "" {
		ws.project = ws.repo.Project
	}
	switch {
	case ws.project == "" && !ws.inRepo:
		// --project would not help a pattern (no root to be relative
		// to): say what does.
		return workspace{}, usageError{fmt.Errorf("%s is not in a git repository: run this inside one (reservations --project NAME lists a project's reservations from anywhere)", cwd)}
	case ws.project == "":
		return workspace{}, usageError{fmt.Errorf("no project: the repository at %s has no commits yet; pass --project NAME or set CODI2_PROJECT", ws.repo.Root)}
	}
	if err := state.ValidProject(ws.project); err != nil {
		return workspace{}, usageError{fmt.Errorf("--project: %w", err)}
	}
	return ws, nil
}

// errNoRoot is the usage error of a pattern or path given outside a
// repository.
func (ws workspace) errNoRoot() error {
	return usageError{fmt.Errorf("%s is not in a git repository: patterns and paths are relative to a repository root, so run this inside one", ws.cwd)}
}

// patterns normalizes the PATTERN arguments against the repository root:
// a path outside it, or a malformed glob, is bad usage and nothing is
// reserved.
func (ws workspace) patterns(args []string) ([]string, error) {
	if !ws.inRepo {
		return nil, ws.errNoRoot()
	}
	if len(args) > state.MaxTxnOps {
		return nil, usageError{fmt.Errorf("%d patterns: at most %d in one command", len(args), state.MaxTxnOps)}
	}
	out := make([]string, 0, len(args))
	for _, a := range args {
		p, err := ws.repo.Pattern(ws.cwd, a)
		if err != nil {
			return nil, usageError{fmt.Errorf("pattern %q: %w", a, err)}
		}
		out = append(out, p)
	}
	return out, nil
}

// UnreserveAsTyped releases c's agent's reservations in project of args
// (typed in directory cwd of repository r), whose patterns are pats, and
// returns the patterns released. When the agent holds no reservation of
// one of them, each such pattern is replaced by another reading of its arg
// that the agent holds (repo.Repo.Readings), and the release is tried
// again: "newdir/[id]/x" reserved as a glob before the file existed, or
// "later" as a file before the directory did, is released by the same
// spelling after. Unreserve is all or none, so the first try changes
// nothing when it fails; the common case costs one request.
func UnreserveAsTyped(ctx context.Context, c *state.Client, r repo.Repo, cwd, project string, args, pats []string) ([]string, error) {
	err := c.Unreserve(ctx, project, pats)
	if !errors.Is(err, state.ErrNotFound) {
		return pats, err
	}
	alt, aerr := heldReadings(ctx, c, r, cwd, project, args, pats)
	if aerr != nil || slices.Equal(alt, pats) {
		return pats, err
	}
	return alt, c.Unreserve(ctx, project, alt)
}

// heldReadings is pats with each pattern c's agent does not hold in
// project replaced by another reading of its arg that it holds; a pattern
// with no held reading is left as it is. It costs one list of the agent's
// reservations.
func heldReadings(ctx context.Context, c *state.Client, r repo.Repo, cwd, project string, args, pats []string) ([]string, error) {
	held, err := c.Reservations(ctx, project, c.Agent(), "")
	if err != nil {
		return nil, err
	}
	mine := make(map[string]bool, len(held))
	for _, h := range held {
		mine[h.Pattern] = true
	}
	out := slices.Clone(pats)
	for i, a := range args {
		if mine[out[i]] {
			continue
		}
		readings, err := r.Readings(cwd, a)
		if err != nil {
			return nil, usageError{fmt.Errorf("pattern %q: %w", a, err)}
		}
		for _, p := range readings {
			if mine[p] {
				out[i] = p
				break
			}
		}
	}
	return out, nil
}

// reservationJSON is a reservation as --json prints it.
type reservationJSON struct {
	Project   string     `json:"project"`
	Pattern   string     `json:"pattern"`
	Holder    string     `json:"holder"`
	Shared    bool       `json:"shared"`
	Reason    string     `json:"reason,omitempty"`
	Rev       uint64     `json:"rev"`
	ExpiresAt *time.Time `json:"expires_at"`
	BoundTo   string     `json:"bound_to,omitempty"`
	ID        string     `json:"id"`
}

func heldJSON(h state.HeldReservation) reservationJSON {
	return reservationJSON{Project: h.Project, Pattern: h.Pattern, Holder: h.Holder, Shared: h.Shared, Reason: h.Reason,
		Rev: h.Record.Rev, ExpiresAt: h.Record.ExpiresAt, BoundTo: h.Record.BoundTo, ID: h.Record.ID}
}

// ReservationText is a reservation in one line.
func ReservationText(h state.HeldReservation) string {
	mode := "exclusive"
	if h.Shared {
		mode = "shared"
	}
	s := fmt.Sprintf("%s %s by %s (%s, rev %d)", h.Project, clean(h.Pattern), h.Holder, mode, h.Record.Rev)
	if h.Record.ExpiresAt != nil {
		s += " until " + h.Record.ExpiresAt.UTC().Format(time.RFC3339)
	}
	if h.Record.BoundTo != "" {
		s += " or " + h.Record.BoundTo + "'s presence ends"
	}
	if h.Reason != "" {
		s += ": " + clean(h.Reason)
	}
	return s
}

// overlapError turns a lost reservation of one of pats (reserved by me in
// project) into exit 3 naming the holder, its pattern, revision and expiry.
func overlapError(err error, project, me string, pats []string) error {
	var ce *state.ConflictError
	if !errors.As(err, &ce) || ce.Event.Overlap == nil {
		return err
	}
	o := ce.Event.Overlap
	until := "without expiry"
	if o.ExpiresAt != nil {
		until = "until " + o.ExpiresAt.UTC().Format(time.RFC3339)
	}
	mine := o.Path
	for _, p := range pats {
		if id, _ := state.ReservationID(project, me, p); id == ce.Event.ID {
			mine = p
		}
	}
	return conflictError{msg: fmt.Sprintf("conflict: %s overlaps %s reserved by %s (rev %d, %s; both match %s)",
		clean(mine), clean(o.Pattern), o.Holder, o.Rev, until, clean(o.Path))}
}

func (e *env) reserveCmd() *cobra.Command {
	var (
		ttl    time.Duration
		shared bool
		reason string
		bind   bool
	)
	cmd := &cobra.Command{
		Use:   "reserve PATTERN...",
		Short: "reserve files or globs relative to the repository root, all or none",
		Long: `Reserve files for --agent: paths or globs (*, ?, **, [...]) relative to the
working directory or absolute, stored relative to the git repository root so
that every worktree and clone shares them. Exclusive unless --shared. All
patterns are granted in one transaction, or none: exit 3 when one overlaps a
live reservation of another agent (some path matches both, and either is
exclusive); the holder, its pattern, rev and expiry are printed. Reserving a
pattern you hold renews it. The reservations end after --ttl, or when your
presence ends (see heartbeat) unless --bind=false. A path outside the
repository is bad usage (exit 2).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := state.CheckTTL(ttl); err != nil {
				return usageError{fmt.Errorf("--%w", err)}
			}
			ws, err := e.workspace(cmd)
			if err != nil {
				return err
			}
			pats, err := ws.patterns(args)
			if err != nil {
				return err
			}
			c, ctx, cancel, err := e.stateCtx(cmd, true)
			if err != nil {
				return err
			}
			defer cancel()
			recs, err := c.Reserve(ctx, ws.project, pats, state.ReserveOptions{TTL: ttl, Shared: shared, Reason: reason, Bind: bind})
			if err != nil {
				return overlapError(err, ws.project, c.Agent(), pats)
			}
			for i, r := range recs {
				h := state.HeldReservation{Record: r, Reservation: state.Reservation{Holder: c.Agent(), Pattern: pats[min(i, len(pats)-1)],
					Project: ws.project, Shared: shared, Reason: reason}}
				_ = r.Field("pattern", &h.Pattern)
				if err := e.out.emit(heldJSON(h), "reserved "+ReservationText(h)); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", DefaultReserveTTL, "how long the reservations last unless renewed (reserve again)")
	cmd.Flags().BoolVar(&shared, "shared", false, "a shared reservation: overlaps other shared ones")
	cmd.Flags().StringVar(&reason, "reason", "", "why, shown to other agents (a task id)")
	cmd.Flags().BoolVar(&bind, "bind", true, "end the reservations when this agent's presence ends")
	return cmd
}

func (e *env) unreserveCmd() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "unreserve PATTERN...",
		Short: "release your own reservations (--all for every one)",
		Long: `Release --agent's reservations of PATTERNs, exactly as they were reserved
(normalized the same way), all or none: exit 4 when you hold no reservation
of one of them. --all releases every reservation you hold in the project.`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case all && len(args) > 0:
				return errors.New("give PATTERNs or --all, not both")
			case !all && len(args) == 0:
				return errors.New("give the PATTERNs to release, or --all")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ws, err := e.workspace(cmd)
			if err != nil {
				return err
			}
			c, ctx, cancel, err := e.stateCtx(cmd, true)
			if err != nil {
				return err
			}
			defer cancel()
			var pats []string
			if all {
				pats, err = c.UnreserveAll(ctx, ws.project)
			} else if pats, err = ws.patterns(args); err == nil {
				if pats, err = UnreserveAsTyped(ctx, c, ws.repo, ws.cwd, ws.project, args, pats); err != nil {
					pats = nil
				}
			}
			for _, p := range pats {
				v := map[string]any{"project": ws.project, "pattern": p, "holder": c.Agent(), "released": true}
				if err := e.out.emit(v, "released "+ws.project+" "+clean(p)); err != nil {
					return err
				}
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "release every reservation you hold in the project")
	return cmd
}

func (e *env) reservationsCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "reservations",
		Short: "list live reservations (--agent, --path PATH)",
		Long: `List the project's live reservations, one per line. --agent given on the
command line lists only that agent's (CODI2_AGENT does not filter); --path
lists only those covering PATH (relative to the working directory or
absolute), which is how to ask "may I edit this file?".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ws, err := e.workspace(cmd)
			if err != nil {
				return err
			}
			holder := ""
			if e.agentFlag {
				if holder, err = e.me(); err != nil {
					return err
				}
			}
			if cmd.Flags().Changed("path") {
				if !ws.inRepo {
					return ws.errNoRoot()
				}
				if path, err = ws.repo.Path(ws.cwd, path); err != nil {
					return usageError{fmt.Errorf("--path takes a file's path (without --path every reservation is listed): %w", err)}
				}
			}
			c, ctx, cancel, err := e.stateCtx(cmd, false)
			if err != nil {
				return err
			}
			defer cancel()
			held, err := c.Reservations(ctx, ws.project, holder, path)
			if err != nil {
				return err
			}
			for _, h := range held {
				if err := e.out.emit(heldJSON(h), ReservationText(h)); err != nil {
					return err
				}
			}
			if len(held) == 0 && !e.g.json {
				_, err = fmt.Fprintln(e.io.Out, "no live reservations in "+ws.project)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&path, "path", "", "only reservations covering this path")
	return cmd
}
