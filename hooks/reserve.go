package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/codi2/codi2/internal/pathglob"
	"github.com/codi2/codi2/internal/repo"
	"github.com/codi2/codi2/state"
)

// Target is the file a file tool is about to change or changed: the
// repository it is in, its project name and its path relative to the root
// (a normalized pathglob pattern that names one file). A plain value.
type Target struct {
	Root    string
	Project string
	Path    string
}

// toolPath is the file a file tool's input names: tool_input.file_path,
// or notebook_path (NotebookEdit), as exact member names holding a
// non-empty string; "" when there is none.
func toolPath(hi Input) string {
	var ti map[string]json.RawMessage
	if json.Unmarshal(hi.ToolInput, &ti) != nil {
		return ""
	}
	str := func(k string) string {
		var s string
		_ = json.Unmarshal(ti[k], &s)
		return s
	}
	if p := str("file_path"); p != "" {
		return p
	}
	return str("notebook_path")
}

// FindTarget resolves p (absolute, or relative to cwd) to its repository
// and its path there. The repository is the one of the file's nearest
// existing directory, so that an edit of a file in another repository than
// cwd is checked against that repository's reservations. project, when not
// empty, overrides the project derived from the repository. It fails with
// ErrNotManaged (wrapping repo's error) when the file is not in a git work
// tree, or is in one without commits and project is empty.
func FindTarget(ctx context.Context, cwd, p, project string) (Target, error) {
	abs := p
	if !filepath.IsAbs(abs) {
		abs = filepath.Join(cwd, abs)
	}
	r, err := repo.Find(ctx, existingDir(filepath.Dir(abs)))
	switch {
	case err == nil, errors.Is(err, repo.ErrNoCommits) && project != "":
	case errors.Is(err, repo.ErrNoCommits):
		return Target{}, fmt.Errorf("%w: %s is in a repository without commits (no project name yet)", ErrNotManaged, p)
	default:
		return Target{}, fmt.Errorf("%w: %s is not in a git repository", ErrNotManaged, p)
	}
	rel, err := r.Path(cwd, abs)
	if err != nil {
		return Target{}, fmt.Errorf("%w: %s: %w", ErrNotManaged, p, err)
	}
	if project == "" {
		project = r.Project
	}
	return Target{Root: r.Root, Project: project, Path: rel}, nil
}

// existingDir is dir or its nearest existing ancestor: the directory of a
// file that Write is about to create may not exist yet.
func existingDir(dir string) string {
	for {
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return dir
		}
		dir = parent
	}
}

// Blocking is the live reservation of an agent other than me that covers
// path exclusively (it is not shared), or nil. Own reservations and shared
// ones never block an edit. held is what Client.Reservations lists for the
// path; the first blocking one in id order is returned.
func Blocking(held []state.HeldReservation, me string) *state.HeldReservation {
	for i, r := range held {
		if r.Holder != me && !r.Shared {
			return &held[i]
		}
	}
	return nil
}

// DenyReason words a blocked edit of path for the model: the holder, the
// pattern and the expiry (RFC 3339, UTC), the reason when one was given,
// and what to do next.
func DenyReason(path, holder, pattern string, expires *time.Time, reason string) string {
	until := "without expiry"
	if expires != nil {
		until = "until " + expires.UTC().Format(time.RFC3339)
	}
	why := ""
	if reason != "" {
		why = " (" + reason + ")"
	}
	return fmt.Sprintf("codi2: %s is reserved by %s (pattern %s) %s%s. Edit something else, or ask %s to release it (codi2 send %s ...).",
		path, holder, pattern, until, why, holder, holder)
}

// deny is the PreToolUse output that denies the edit with reason.
func deny(reason string) Output {
	return Output{HookSpecificOutput: &HookSpecificOutput{HookEventName: "PreToolUse",
		PermissionDecision: "deny", PermissionDecisionReason: reason}}
}

// preToolUse denies an edit of a file another live agent reserved
// exclusively and, with cfg.AutoReserve, reserves a free file for this
// agent. It makes no decision otherwise (never "allow").
func preToolUse(ctx context.Context, sc *state.Client, cfg Config, t Target) (Output, error) {
	held, err := sc.Reservations(ctx, t.Project, "", t.Path)
	if err != nil {
		return Output{}, err
	}
	if b := Blocking(held, cfg.Agent); b != nil {
		return deny(DenyReason(t.Path, b.Holder, b.Pattern, b.Record.ExpiresAt, b.Reason)), nil
	}
	if cfg.AutoReserve <= 0 {
		return Output{}, nil
	}
	for _, r := range held {
		if r.Holder == cfg.Agent {
			return Output{}, nil // held already: only the first edit reserves
		}
	}
	recs, err := sc.Reserve(ctx, t.Project, []string{pathglob.QuoteMeta(t.Path)}, state.ReserveOptions{TTL: cfg.AutoReserve, Bind: true, Reason: "auto-reserved on edit"})
	var ce *state.ConflictError
	switch {
	case errors.As(err, &ce) && ce.Event.Overlap != nil:
		// Another agent reserved it since the listing: shared, it lets the
		// edit go on unreserved; exclusive, it blocks.
		if o := ce.Event.Overlap; !o.Shared {
			return deny(DenyReason(t.Path, o.Holder, o.Pattern, o.ExpiresAt, "")), nil
		}
		return Output{}, nil
	case err != nil:
		return Output{}, err
	}
	until := ""
	if len(recs) == 1 && recs[0].ExpiresAt != nil {
		until = " until " + recs[0].ExpiresAt.UTC().Format(time.RFC3339)
	}
	return withContext("PreToolUse", fmt.Sprintf("codi2: reserved %s for %s%s, or until your presence ends; release it with `codi2 unreserve%s %s`.",
		t.Path, cfg.Agent, until, cfg.agentFlag(), shellQuote(pathglob.QuoteMeta(t.Path)))), nil
}

// holdings words what the agent holds for the model: its live reservations
// in project (none looked up when project is empty) and the tasks whose
// lease it holds. "" when it holds nothing.
func holdings(ctx context.Context, sc *state.Client, project string) (string, error) {
	var parts []string
	if project != "" {
		held, err := sc.Reservations(ctx, project, sc.Agent(), "")
		if err != nil {
			return "", err
		}
		var res []string
		for _, r := range held {
			res = append(res, r.Pattern+leaseEnd(r.Record.ExpiresAt))
		}
		if len(res) > 0 {
			parts = append(parts, "reservations "+strings.Join(res, ", "))
		}
	}
	var tasks []string
	now := time.Now()
	opts := state.ListOptions{Limit: 1000}
	for {
		page, err := sc.List(ctx, TaskKind, opts)
		if err != nil {
			return "", err
		}
		for _, r := range page.Records {
			if r.Holder() == sc.Agent() && r.ExpiresAt.After(now) {
				tasks = append(tasks, fmt.Sprintf("%s (rev %d%s)", r.ID, r.Rev, leaseEnd(r.ExpiresAt)))
			}
		}
		if page.NextAfter == "" {
			break
		}
		opts.After = page.NextAfter
	}
	if len(tasks) > 0 {
		parts = append(parts, "tasks "+strings.Join(tasks, ", "))
	}
	if len(parts) == 0 {
		return "", nil
	}
	return fmt.Sprintf("codi2: %s holds %s.", sc.Agent(), strings.Join(parts, "; ")), nil
}

// TaskKind is the kind of the claims the SessionStart summary lists.
const TaskKind = "task"

func leaseEnd(t *time.Time) string {
	if t == nil {
		return ""
	}
	return " until " + t.UTC().Format(time.RFC3339)
}
