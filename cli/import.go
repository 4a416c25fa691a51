package cli

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/state"
	"github.com/codi2/codi2/subjects"
	"github.com/codi2/codi2/v1import"
)

func (e *env) importCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import v1 FILE...",
		Short: "import CODI v1 logs: audit events, task state (see README, Importing CODI v1 logs)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageError{fmt.Errorf("import: say what to import: codi2 import v1 FILE...")}
		},
	}
	var dryRun bool
	v1 := &cobra.Command{
		Use:   "v1 FILE...",
		Short: "import CODI v1 JSON-lines logs",
		Long: `Read CODI v1 logs (torn and spliced lines included) and publish every event as
an audit event of source --agent (default v1-import), every fragment that
is not an event as a non-JSON audit event, and every state update
(TASK_ASSIGN, STATUS_UPDATE) as a command on task/<task>. A second import of
a file imports nothing twice. Prints a summary per file; a progress bar on a
terminal. --dry-run reads and counts the whole file, without a server.

A state update the state service would refuse (a record above its size
limit, a task id no subject token holds) is counted as refused, with its
byte offset and reason; a line too large for one message is kept as an
audit event with its length, SHA-256 and first 1 KiB (oversized). A file's
id comes from its first non-blank line once that line has its newline: a
file without one imports nothing yet. Interrupted (Ctrl-C), it says how far
it got; running it again continues from the last checkpoint.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			source := e.g.agent
			if source == "" {
				source = v1import.DefaultSource
			}
			if err := subjects.ValidAgent(source); err != nil {
				return usageError{fmt.Errorf("agent id %q: %w", source, err)}
			}
			// Every file readable before any is imported: a name mistyped
			// last is not found after the others went in.
			for _, file := range args {
				if err := readable(file); err != nil {
					return fmt.Errorf("import v1: %w (nothing imported)", err)
				}
			}
			// A dry run reads and counts only: it needs no server.
			var (
				sc *state.Client
				ac *audit.Client
			)
			if !dryRun {
				if err := e.connect(); err != nil {
					return err
				}
				var err error
				if sc, err = state.NewClient(e.nc, source); err != nil {
					return err
				}
				if ac, err = audit.NewClient(e.nc); err != nil {
					return err
				}
				defer ac.Close()
			}
			for _, file := range args {
				cfg := v1import.Config{DryRun: dryRun}
				if e.nc != nil {
					cfg.MaxPayload = e.nc.MaxPayload() // a bulk message stays below it
				}
				bar := e.progress(file)
				if bar != nil {
					cfg.Progress = func(read, size int64) {
						bar.ChangeMax64(size)
						_ = bar.Set64(read)
					}
				}
				im, err := v1import.New(cfg, ac, sc)
				if err != nil {
					return err
				}
				sum, err := im.Import(cmd.Context(), file)
				if bar != nil {
					_ = bar.Finish()
				}
				if err != nil {
					return err
				}
				if err := e.out.emit(sum, summaryText(sum)); err != nil {
					return err
				}
			}
			return nil
		},
	}
	v1.Flags().BoolVar(&dryRun, "dry-run", false, "read and count, publish nothing")
	v1.Args = wrapArgs(v1.Args)
	cmd.AddCommand(v1)
	return cmd
}

// readable checks that file opens for reading and is not a directory.
func readable(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err == nil && fi.IsDir() {
		err = fmt.Errorf("%s is a directory, not a v1 log", file)
	}
	return err
}

// progress is a progress bar on standard error when it is a terminal.
func (e *env) progress(file string) *progressbar.ProgressBar {
	f, ok := e.io.Err.(*os.File)
	if !ok || !isatty.IsTerminal(f.Fd()) {
		return nil
	}
	return progressbar.NewOptions64(-1, progressbar.OptionSetWriter(io.Writer(f)), progressbar.OptionShowBytes(true),
		progressbar.OptionSetDescription(file), progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
}

// summaryText is an import's summary on one line.
func summaryText(s v1import.Summary) string {
	if s.NoFirstLine {
		return s.File + ": no first line yet (a non-blank line with its newline, which names the file): nothing imported; import it again once v1 has written one"
	}
	dry, did := "", "imported"
	if s.DryRun {
		dry, did = " (dry run: nothing published)", "to import"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s (%d imported before), %d %s: %s (%d recovered from torn lines), %d unparseable",
		s.File, plural(s.Lines, "line"), s.Skipped, s.Imported, did, plural(s.Events, "event"), s.Recovered, s.Unparseable)
	if s.Oversized > 0 {
		fmt.Fprintf(&b, ", %d oversized (too large for a message: kept as length, SHA-256 and first 1 KiB)", s.Oversized)
	}
	fmt.Fprintf(&b, "; %s", plural(s.StateCommands, "state command"))
	if s.Refused > 0 {
		fmt.Fprintf(&b, "; %d state updates refused, not applied (", s.Refused)
		for i, r := range s.RefusedAt {
			if i > 0 {
				b.WriteString("; ")
			}
			fmt.Fprintf(&b, "byte %d, task %q: %s", r.Offset, r.Task, r.Reason)
		}
		if s.Refused > len(s.RefusedAt) {
			fmt.Fprintf(&b, "; %d more", s.Refused-len(s.RefusedAt))
		}
		b.WriteString(")")
	}
	if s.RefusedCommands > 0 {
		fmt.Fprintf(&b, "; %d update commands refused by the state service, their updates not applied (see its audit records of source codi-state with txn v1-%s-…)",
			s.RefusedCommands, s.FileID)
	}
	if s.RefusedBefore > 0 {
		fmt.Fprintf(&b, "; %d state updates refused by earlier imports", s.RefusedBefore)
	}
	fmt.Fprintf(&b, "; %s left%s", plural(s.Partial, "partial line"), dry)
	return b.String()
}

// plural is n and noun, with an s unless n is 1: "1 line", "0 lines".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
