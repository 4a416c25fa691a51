package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/filewatch"
	"github.com/codi2/codi2/internal/repo"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
)

// filesOptions are watch --files's flags.
type filesOptions struct {
	files, noHash bool
	settle        time.Duration
}

// watchFiles runs `codi2 watch --files [DIR]` until interrupted: the
// connection reconnects for ever, so a server restart is waited out with
// the changes queued (filewatch.Config.MaxQueue).
func (e *env) watchFiles(cmd *cobra.Command, args []string, fo filesOptions) error {
	arg := "."
	if len(args) == 1 {
		arg = args[0]
	}
	dir, err := filepath.Abs(arg)
	if err == nil {
		dir, err = filepath.EvalSymlinks(dir)
	}
	if err != nil {
		return usageError{fmt.Errorf("watch --files %s: %w", arg, err)}
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return usageError{fmt.Errorf("watch --files %s: not a directory", arg)}
	}
	if fo.settle < 0 {
		return usageError{fmt.Errorf("--settle must not be negative, got %s", fo.settle)}
	}
	cfg := filewatch.Config{Root: dir, Agent: e.g.agent, NoHash: fo.noHash, Settle: fo.settle}
	r, err := repo.Find(cmd.Context(), dir)
	switch {
	case err == nil || errors.Is(err, repo.ErrNoCommits):
		cfg.Root, cfg.Project = r.Root, r.Project
		if len(args) == 0 {
			cfg.Dir = r.Root
		} else {
			cfg.Dir = dir
		}
	case len(args) == 0:
		// Not a repository and no DIR: the current directory may be
		// anything (a home directory, /tmp), and watching it all
		// recursively would record other programs' files.
		return usageError{fmt.Errorf("watch --files: %s is not in a git repository: name the directory to watch (codi2 watch --files DIR)", dir)}
	default:
		// Not a repository: paths are relative to DIR.
		cfg.Dir = dir
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	e.reconnect = true
	if err := e.connect(); err != nil {
		return err
	}
	ac, err := audit.NewClient(e.nc)
	if err != nil {
		return err
	}
	defer ac.Close()
	publish := filewatch.AuditSink(ac, false)
	sink := func(ctx context.Context, c filewatch.Change) error {
		if err := publish(ctx, c); err != nil {
			return err
		}
		return e.out.emit(c, changeText(c))
	}
	log := zerolog.New(zerolog.ConsoleWriter{Out: e.io.Err, NoColor: true, TimeFormat: time.RFC3339}).
		With().Timestamp().Logger()
	w, err := filewatch.New(cfg, sink, log)
	if err != nil {
		return usageError{err}
	}
	return w.Run(cmd.Context(), 2*time.Second)
}

// changeText is one line for a recorded change.
func changeText(c filewatch.Change) string {
	switch {
	case c.Op == filewatch.OpDropped:
		return fmt.Sprintf("dropped %d changes (%s to %s) while the server was away", c.Dropped,
			c.First.Format(time.RFC3339), c.Last.Format(time.RFC3339))
	}
	s := c.Op + " " + clean(c.Path)
	if c.To != "" {
		s += " -> " + clean(c.To)
	}
	if c.SHA256 != "" {
		s += fmt.Sprintf(" (%d bytes, sha256 %.12s)", *c.Size, c.SHA256)
	}
	return s
}
