package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// newFlagSet returns a flag set that reports errors instead of exiting, so
// that run can turn them into exit code 2 (parseWithEnv marks them as
// usage errors).
func newFlagSet(name string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	return fs
}

// parseWithEnv parses args after applying CODI2_<FLAG> environment variables
// (dashes become underscores, upper case): the command line wins over the
// environment, the environment over defaults.
func parseWithEnv(fs *flag.FlagSet, args []string) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		name := envName(f.Name)
		if v, ok := os.LookupEnv(name); ok && err == nil {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("invalid value %q for %s: %v", v, name, serr)
			}
		}
	})
	if err != nil {
		return usageError{err}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))}
	}
	return nil
}

// usageError is a command line codi2 cannot run as written (an unknown
// flag or subcommand, a bad flag value, an extra argument): run exits 2 on
// it, the contract's bad usage, like the agents' verbs do (CONTRACT.md
// "Exit codes"). The hooks exit 1 on it instead: Claude Code reads a
// hook's exit 2 as "block the tool call".
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usagef is a usageError formatted as fmt.Errorf formats.
func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

func envName(flag string) string {
	return "CODI2_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}
