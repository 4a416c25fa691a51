// Command codi2 runs the codi2 event platform: the embedded NATS message
// bus, the state service and the audit log, in one process.
//
//	codi2 serve      run the server (flags below, or CODI2_* variables)
//	codi2 bench      measure codi2 against the design targets and CODI v1
//	codi2 audit      export the audit log, verify an export or the server's log
//	codi2 version    print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `codi2: the event platform AI coding agents coordinate on.

Usage:
  codi2 serve [flags]     run the server (codi2 serve -h for flags)
  codi2 bench [flags]     measure codi2 against the design targets and CODI v1
  codi2 audit export      write audit records as JSON lines from a running server
  codi2 audit verify      check an export offline (--file) or the server's log
  codi2 version           print the version
`

// run dispatches a command line and returns the process exit code: 0 on
// success, 1 on any error (a bad flag included), 2 for a bare usage request.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = runServe(ctx, args[1:], stderr)
	case "bench":
		err = runBench(ctx, args[1:], stdout, stderr)
	case "audit":
		err = runAudit(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, versionString())
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		err = fmt.Errorf("unknown command %q\n\n%s", args[0], usage)
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "codi2:", err)
		return 1
	}
	return 0
}

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	return "codi2 " + v
}
