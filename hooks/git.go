package hooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/cli"
	"github.com/codi2/codi2/internal/pathglob"
	"github.com/codi2/codi2/internal/repo"
	"github.com/codi2/codi2/state"
	"github.com/nats-io/nats.go"
)

// DefaultGitBudget bounds the pre-commit check against the server: a
// commit is not as hot a path as an edit, but a codi2 that does not answer
// still lets it through.
const DefaultGitBudget = time.Second

// GitConfig is one `codi2 hook git-pre-commit` run's settings.
type GitConfig struct {
	// Agent is the committing agent: its own reservations do not block.
	// Empty: nobody's, so every exclusive reservation blocks.
	Agent   string
	NATSURL string
	Creds   string
	// Project overrides the project derived from the repository.
	Project string
	// Dir is where git runs the hook (the work tree's top level).
	Dir string
	// Budget bounds the work against the server. Default
	// DefaultGitBudget.
	Budget time.Duration
}

// PreCommit checks the files staged in cfg.Dir's repository (git diff
// --cached, renames as a deletion and an addition) against the live
// reservations of the project. It fails with an error wrapping
// ErrCommitRefused, naming for each blocked file its holder, pattern and
// expiry, when another agent reserved one exclusively. It fails open: when
// the directory is not a repository codi2 manages, or codi2 does not answer
// within the budget, it writes a one-line warning to warn and returns nil.
func PreCommit(ctx context.Context, cfg GitConfig, warn io.Writer) error {
	if cfg.Budget <= 0 {
		cfg.Budget = DefaultGitBudget
	}
	if cfg.NATSURL == "" {
		cfg.NATSURL = cli.DefaultNATSURL
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Budget)
	defer cancel()
	blocked, err := preCommit(ctx, cfg)
	if err != nil {
		fmt.Fprintln(warn, "codi2: pre-commit reservation check skipped:", err)
		return nil
	}
	if len(blocked) == 0 {
		return nil
	}
	who := "set CODI2_AGENT to your agent id if they are yours, "
	if cfg.Agent != "" {
		who = ""
	}
	return fmt.Errorf("%w:\n  %s\nAsk the holder to release them, unstage them, %sor commit with --no-verify",
		ErrCommitRefused, strings.Join(blocked, "\n  "), who)
}

func preCommit(ctx context.Context, cfg GitConfig) ([]string, error) {
	r, err := repo.Find(ctx, cfg.Dir)
	switch {
	case err == nil, errors.Is(err, repo.ErrNoCommits) && cfg.Project != "":
	default:
		return nil, fmt.Errorf("%w: %w", ErrNotManaged, err)
	}
	project := cfg.Project
	if project == "" {
		project = r.Project
	}
	staged, err := repo.Git(ctx, r.Root, "diff", "--cached", "--name-only", "--no-renames", "-z")
	if err != nil {
		return nil, fmt.Errorf("staged files: %w", err)
	}
	var files []string
	for _, f := range strings.Split(staged, "\x00") {
		if f != "" {
			files = append(files, f)
		}
	}
	if len(files) == 0 {
		return nil, nil
	}
	left := cfg.Budget
	if dl, ok := ctx.Deadline(); ok {
		left = max(time.Until(dl), time.Millisecond) // what git left of the budget
	}
	opts := []nats.Option{nats.Name("codi2 hook git-pre-commit"), nats.Timeout(left), nats.NoReconnect()}
	if cfg.Creds != "" {
		opts = append(opts, bus.Credentials(cfg.Creds))
	}
	nc, err := nats.Connect(cfg.NATSURL, opts...)
	if err != nil {
		return nil, fmt.Errorf("codi2 unreachable at %s", cfg.NATSURL)
	}
	defer nc.Close()
	// Reading needs no identity of its own: list as the committer, or as
	// an observer when there is none.
	reader := cfg.Agent
	if reader == "" {
		reader = "codi2-git"
	}
	sc, err := state.NewClient(nc, reader)
	if err != nil {
		return nil, err
	}
	held, err := sc.Reservations(ctx, project, "", "")
	if err != nil {
		return nil, err
	}
	var blocked []string
	for _, f := range files {
		var covering []state.HeldReservation
		for _, h := range held {
			if pat, err := pathglob.Compile(h.Pattern); err == nil && pat.Match(f) {
				covering = append(covering, h)
			}
		}
		if b := Blocking(covering, cfg.Agent); b != nil {
			blocked = append(blocked, fmt.Sprintf("%s is reserved by %s (pattern %s)%s", f, b.Holder, b.Pattern, leaseEnd(b.Record.ExpiresAt)))
		}
	}
	return blocked, nil
}

// gitHookMarker is the line that marks a pre-commit hook as the one
// GitInstall writes.
const gitHookMarker = "# codi2 pre-commit hook: written by `codi2 hooks install --git`, removed by `codi2 hooks uninstall --git`"

// chainedSuffix names the user's own pre-commit hook once GitInstall has
// put its own in its place; the codi2 hook runs it after its check.
const chainedSuffix = ".codi2-chained"

// gitHook is the pre-commit script GitInstall writes: the codi2 check, then
// the hook it replaced, if any, with the same arguments and input.
func gitHook(bin string) string {
	return "#!/bin/sh\n" + gitHookMarker + "\n" +
		shellQuote(bin) + " hook git-pre-commit || exit 1\n" +
		`chained="$(dirname "$0")/pre-commit` + chainedSuffix + `"` + "\n" +
		`if [ -x "$chained" ]; then exec "$chained" "$@"; fi` + "\n"
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '/' || r == '.' || r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// GitHooksDir is the directory git runs dir's hooks from (git rev-parse
// --git-path hooks: the common one of all worktrees, or core.hooksPath).
func GitHooksDir(ctx context.Context, dir string) (string, error) {
	out, err := repo.Git(ctx, dir, "rev-parse", "--git-path", "hooks")
	if err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrNotManaged, dir, err)
	}
	p := strings.TrimSpace(out)
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	return p, nil
}

// GitInstall puts the codi2 pre-commit hook in dir's repository, running
// bin (Command when empty). A pre-commit hook of the user's is kept as
// pre-commit.codi2-chained and run after the check. It returns what it did
// (or, with dry, would do), one line each; nothing when the hook is there
// already.
func GitInstall(ctx context.Context, dir, bin string, dry bool) ([]string, error) {
	if bin == "" {
		bin = Command
	}
	hooksDir, err := GitHooksDir(ctx, dir)
	if err != nil {
		return nil, err
	}
	hook := filepath.Join(hooksDir, "pre-commit")
	chained := hook + chainedSuffix
	cur, err := os.ReadFile(hook)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var did []string
	switch {
	case err == nil && bytes.Contains(cur, []byte(gitHookMarker)):
		if string(cur) == gitHook(bin) {
			return nil, nil
		}
	case err == nil:
		if _, err := os.Stat(chained); err == nil {
			return nil, fmt.Errorf("%s exists: remove or rename it before installing codi2's pre-commit hook", chained)
		}
		did = append(did, "moved "+hook+" to "+chained+" (run after the codi2 check)")
		if !dry {
			if err := os.Rename(hook, chained); err != nil {
				return nil, err
			}
		}
	}
	if dry {
		// Say what would be written, the script included.
		for i := range did {
			did[i] = "would have " + did[i]
		}
		return append(did, "would write "+hook+":\n"+gitHook(bin)), nil
	}
	did = append(did, "wrote "+hook)
	if err := os.MkdirAll(hooksDir, 0o755); err != nil {
		return nil, err
	}
	return did, os.WriteFile(hook, []byte(gitHook(bin)), 0o755)
}

// GitUninstall removes the codi2 pre-commit hook from dir's repository and
// puts back the hook it chained, if any. A pre-commit hook that is not
// codi2's is left alone. It returns what it did (or, with dry, would do).
func GitUninstall(ctx context.Context, dir string, dry bool) ([]string, error) {
	hooksDir, err := GitHooksDir(ctx, dir)
	if err != nil {
		return nil, err
	}
	hook := filepath.Join(hooksDir, "pre-commit")
	cur, err := os.ReadFile(hook)
	if errors.Is(err, os.ErrNotExist) || err == nil && !bytes.Contains(cur, []byte(gitHookMarker)) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	did := []string{"removed " + hook}
	chained := hook + chainedSuffix
	_, cerr := os.Stat(chained)
	if cerr == nil {
		did = append(did, "moved "+chained+" back to "+hook)
	}
	if dry {
		for i := range did {
			did[i] = "would have " + did[i]
		}
		return did, nil
	}
	if err := os.Remove(hook); err != nil {
		return nil, err
	}
	if cerr == nil {
		return did, os.Rename(chained, hook)
	}
	return did, nil
}
