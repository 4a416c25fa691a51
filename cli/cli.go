package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/state"
	"github.com/codi2/codi2/subjects"
	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit codes of the agent command line (CONTRACT.md section 5), so that a
// script or an agent can branch on the outcome without parsing text.
const (
	ExitOK          = 0
	ExitError       = 1
	ExitUsage       = 2
	ExitConflict    = 3
	ExitNotFound    = 4
	ExitUnreachable = 5
)

// DefaultNATSURL is where the verbs find the server unless told otherwise.
const DefaultNATSURL = "nats://127.0.0.1:4222"

// DefaultTimeout bounds one verb's requests to the server.
const DefaultTimeout = 5 * time.Second

// IO is where a verb reads and writes: the process's standard streams, or a
// test's buffers.
type IO struct {
	In       io.Reader
	Out, Err io.Writer
	Getenv   func(string) string
	Now      func() time.Time
}

// Verbs lists the agent verbs, in the order `codi2 help` shows them.
var Verbs = []string{"send", "inbox", "claim", "renew", "release", "reserve", "unreserve", "reservations", "heartbeat", "who",
	"log", "history", "get", "list", "watch", "status", "import"}

// IsVerb reports whether name is an agent verb handled by Run.
func IsVerb(name string) bool {
	for _, v := range Verbs {
		if v == name {
			return true
		}
	}
	return false
}

// globals are the flags every verb takes, each also read from CODI2_<FLAG>.
type globals struct {
	agent   string
	natsURL string
	creds   string
	json    bool
	timeout time.Duration
}

// env is one verb invocation's context: flags, streams and, once connect
// ran, the connection and clients.
type env struct {
	g  globals
	io IO
	// project is --project (CODI2_PROJECT): the reservations' project.
	project string
	// agentFlag is whether --agent was given on the command line (not
	// from CODI2_AGENT): reservations filters by it only then.
	agentFlag bool
	// follow makes the connection reconnect for ever (watch), saying so
	// on standard error, instead of failing at the first loss.
	follow bool
	nc     *nats.Conn
	out    printer
	// cancel ends the verb at once when the server refuses a publish or
	// subscription (a permissions violation arrives asynchronously, and
	// the request it refused would otherwise wait out --timeout); denied
	// holds that refusal.
	cancel context.CancelFunc
	denied atomic.Pointer[error]
	// reconnect makes connect's connection reconnect for ever once it is
	// connected (watch --files), instead of failing at the first loss; a
	// server unreachable at start is still ExitUnreachable.
	reconnect bool
}

// Run runs one agent verb (args[0] is the verb) and returns the process
// exit code. Errors go to io.Err in one line; results to io.Out, as text or,
// with --json, one compact JSON object per line.
func Run(ctx context.Context, args []string, sio IO) int {
	if sio.Getenv == nil {
		sio.Getenv = os.Getenv
	}
	if sio.Now == nil {
		sio.Now = time.Now
	}
	e := &env{io: sio}
	ctx, e.cancel = context.WithCancel(ctx)
	defer e.cancel()
	root := e.root()
	root.SetArgs(args)
	root.SetOut(sio.Out)
	root.SetErr(sio.Err)
	err := root.ExecuteContext(ctx)
	if d := e.denied.Load(); d != nil && err != nil {
		err = deniedError{*d}
	}
	if e.nc != nil {
		_ = e.nc.Drain()
	}
	if err == nil {
		return ExitOK
	}
	code, msg := classify(err)
	fmt.Fprintln(sio.Err, "codi2:", msg)
	return code
}

func (e *env) root() *cobra.Command {
	root := &cobra.Command{
		Use:           "codi2",
		Short:         "codi2: the event platform AI coding agents coordinate on",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			e.agentFlag = cmd.Flags().Changed("agent")
			if err := applyEnv(cmd.Flags(), e.io.Getenv); err != nil {
				return err
			}
			if e.g.timeout <= 0 {
				return usageError{fmt.Errorf("--timeout must be positive, got %s", e.g.timeout)}
			}
			e.out = printer{w: e.io.Out, json: e.g.json}
			return nil
		},
	}
	root.CompletionOptions.DisableDefaultCmd = true
	pf := root.PersistentFlags()
	pf.StringVar(&e.g.agent, "agent", "", "this agent's id (CODI2_AGENT)")
	pf.StringVar(&e.g.natsURL, "nats-url", DefaultNATSURL, "the codi2 server (CODI2_NATS_URL)")
	pf.StringVar(&e.g.creds, "creds", "", "NATS credentials file (CODI2_CREDS)")
	pf.BoolVar(&e.g.json, "json", false, "print one compact JSON object per line (CODI2_JSON)")
	pf.DurationVar(&e.g.timeout, "timeout", DefaultTimeout, "bound on each request to the server (CODI2_TIMEOUT)")
	pf.StringVar(&e.project, "project", "", "reservations' project (CODI2_PROJECT; default: derived from the git repository)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{plainFlagError(err)} })
	root.AddCommand(e.sendCmd(), e.inboxCmd(), e.claimCmd(), e.renewCmd(), e.releaseCmd(),
		e.reserveCmd(), e.unreserveCmd(), e.reservationsCmd(), e.heartbeatCmd(), e.whoCmd(),
		e.logCmd(), e.historyCmd(), e.getCmd(), e.listCmd(), e.watchCmd(), e.statusCmd(), e.importCmd())
	for _, c := range root.Commands() {
		c.Args = wrapArgs(c.Args)
	}
	return root
}

// wrapArgs turns cobra's argument count errors into usage errors.
func wrapArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	if check == nil {
		return nil
	}
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{fmt.Errorf("%s: %w (usage: %s)", cmd.Name(), err, strings.TrimSuffix(cmd.UseLine(), " [flags]"))}
		}
		return nil
	}
}

// applyEnv sets every flag not given on the command line from
// CODI2_<FLAG> (upper case, dashes as underscores): the command line wins.
func applyEnv(fs *pflag.FlagSet, getenv func(string) string) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || err != nil {
			return
		}
		name := "CODI2_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(name); v != "" {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = usageError{fmt.Errorf("invalid value %q for %s: %v", v, name, serr)}
			}
		}
	})
	return err
}

// connect opens the connection to the server, with the credentials given.
// A server that does not answer within the timeout is ExitUnreachable.
func (e *env) connect() error {
	if e.nc != nil {
		return nil
	}
	reconnect := nats.NoReconnect()
	if e.follow {
		reconnect = func(o *nats.Options) error {
			o.AllowReconnect, o.MaxReconnect, o.ReconnectWait = true, -1, time.Second
			o.DisconnectedErrCB = func(_ *nats.Conn, err error) {
				fmt.Fprintf(e.io.Err, "codi2: lost the server at %s (%v); reconnecting\n", e.g.natsURL, err)
			}
			o.ReconnectedCB = func(*nats.Conn) {
				fmt.Fprintln(e.io.Err, "codi2: reconnected; events committed meanwhile are not replayed")
			}
			return nil
		}
	}
	opts := []nats.Option{nats.Name("codi2 cli"), nats.Timeout(e.g.timeout), reconnect,
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				e.denied.CompareAndSwap(nil, &err)
				e.cancel()
			}
		})}
	if e.g.creds != "" {
		b, err := os.ReadFile(e.g.creds)
		switch {
		case err != nil:
			return usageError{fmt.Errorf("--creds: %w", err)}
		case !bytes.Contains(b, []byte("BEGIN NATS USER JWT")):
			return usageError{fmt.Errorf("--creds %s: not a NATS credentials file (codi2 agent add makes one)", e.g.creds)}
		}
		opts = append(opts, bus.Credentials(e.g.creds))
	}
	if e.reconnect {
		// Reconnect for ever once connected; a server that does not
		// answer at start is ExitUnreachable, as for every verb (with
		// RetryOnFailedConnect the watcher ran without a server and each
		// publish failed with "headers not supported").
		opts = append(opts, func(o *nats.Options) error {
			o.AllowReconnect, o.MaxReconnect, o.ReconnectWait = true, -1, 250*time.Millisecond
			return nil
		})
	}
	nc, err := nats.Connect(e.g.natsURL, opts...)
	if errors.Is(err, nats.ErrAuthorization) {
		return deniedError{fmt.Errorf("the server at %s refused the credentials (none given, revoked, or made for another server): %w", e.g.natsURL, err)}
	}
	if err != nil {
		return unreachableError{fmt.Errorf("cannot reach the codi2 server at %s: %w", e.g.natsURL, err)}
	}
	e.nc = nc
	return nil
}

// me is the agent id the verb acts as: --agent, required for verbs that
// send or hold anything.
func (e *env) me() (string, error) {
	if e.g.agent == "" && e.agentFlag {
		return "", usageError{errors.New("--agent is empty: give an agent id")}
	}
	if e.g.agent == "" {
		return "", usageError{errors.New("no agent id: pass --agent ID or set CODI2_AGENT")}
	}
	if err := subjects.ValidAgent(e.g.agent); err != nil {
		return "", usageError{fmt.Errorf("agent id %q: %w", e.g.agent, err)}
	}
	return e.g.agent, nil
}

func (e *env) ctx(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), e.g.timeout)
}

func (e *env) agent() (*bus.Agent, error) {
	id, err := e.me()
	if err != nil {
		return nil, err
	}
	if err := e.connect(); err != nil {
		return nil, err
	}
	return bus.NewAgent(id, e.nc)
}

func (e *env) stateClient(needAgent bool) (*state.Client, error) {
	id := e.g.agent
	if needAgent || id != "" {
		var err error
		if id, err = e.me(); err != nil {
			return nil, err
		}
	} else {
		id = "codi2-cli" // reads only: the id is never sent
	}
	if err := e.connect(); err != nil {
		return nil, err
	}
	return state.NewClient(e.nc, id)
}

// stateCtx is stateClient and the verb's request context: the pair every
// state verb starts with. cancel is a no-op when err is set.
func (e *env) stateCtx(cmd *cobra.Command, needAgent bool) (*state.Client, context.Context, context.CancelFunc, error) {
	c, err := e.stateClient(needAgent)
	if err != nil {
		return nil, nil, func() {}, err
	}
	ctx, cancel := e.ctx(cmd)
	return c, ctx, cancel, nil
}

func (e *env) auditClient() (*audit.Client, error) {
	if err := e.connect(); err != nil {
		return nil, err
	}
	return audit.NewClient(e.nc)
}

// usageError is bad usage: exit 2.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

// unreachableError is a server that cannot be reached: exit 5.
type unreachableError struct{ err error }

func (u unreachableError) Error() string { return u.err.Error() }
func (u unreachableError) Unwrap() error { return u.err }

// deniedError is the server refusing the credentials or an action they do
// not allow: exit 1.
type deniedError struct{ err error }

func (d deniedError) Error() string {
	return strings.TrimPrefix(d.err.Error(), "nats: ") + " (check --agent and --creds: an agent acts only as itself)"
}
func (d deniedError) Unwrap() error { return d.err }

// conflictError is a lost claim or reservation: exit 3, with the holder.
type conflictError struct{ msg string }

func (c conflictError) Error() string { return c.msg }

// classify maps an error to the contract's exit code and its one-line
// message.
func classify(err error) (int, string) {
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	var (
		u  usageError
		un unreachableError
		c  conflictError
		d  deniedError
	)
	switch {
	case errors.As(err, &d):
		return ExitError, msg
	case errors.Is(err, nats.ErrMaxPayload):
		return ExitUsage, msg + " (the server's max payload counts data and headers)"
	case errors.As(err, &u), errors.Is(err, subjects.ErrBadToken), errors.Is(err, subjects.ErrReserved),
		errors.Is(err, state.ErrBadRequest), errors.Is(err, audit.ErrBadRequest), errors.Is(err, bus.ErrPayloadTooLarge):
		return ExitUsage, msg
	case errors.As(err, &c), errors.Is(err, state.ErrConflict):
		return ExitConflict, msg
	case errors.Is(err, state.ErrNotFound):
		return ExitNotFound, msg
	case errors.As(err, &un), errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrNoResponders), errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, state.ErrTimeout),
		errors.Is(err, state.ErrUnavailable):
		return ExitUnreachable, msg
	}
	return ExitError, msg
}

// printer writes results as text or JSON lines.
type printer struct {
	w    io.Writer
	json bool
}

// emit prints v as one JSON line with --json, else text.
func (p printer) emit(v any, text string) error {
	if p.json {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(p.w, "%s\n", b)
		return err
	}
	_, err := fmt.Fprintln(p.w, text)
	return err
}

// clean makes s safe for one line of text output: control characters
// (a newline in a file name, a task id) are written as Go escapes, so a
// value can neither break a result across lines nor forge one.
func clean(s string) string {
	if !strings.ContainsFunc(s, isControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if isControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

// readData returns the verb's DATA argument: the argument itself, "-" for
// standard input, or nothing.
func (e *env) readData(args []string, i int) ([]byte, error) {
	if len(args) <= i {
		return nil, nil
	}
	if args[i] == "-" {
		b, err := io.ReadAll(e.io.In)
		if err != nil {
			return nil, fmt.Errorf("read standard input: %w", err)
		}
		return b, nil
	}
	return []byte(args[i]), nil
}

// numParse matches what pflag says of a number flag it cannot read:
// `invalid argument "abc" for "--rev" flag: strconv.ParseUint: parsing "abc": invalid syntax`.
var numParse = regexp.MustCompile(`^invalid argument "(.*)" for "(.*)" flag: strconv\.Parse(Uint|Int|Float)[0-9]*: parsing ".*": (invalid syntax|value out of range)$`)

// plainFlagError is err in the words of a user rather than of Go's strconv
// ("--rev abc: want a whole number"), or err itself.
func plainFlagError(err error) error {
	m := numParse.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	want := map[string]string{"Uint": "a whole number, 0 or more", "Int": "a whole number", "Float": "a number"}[m[3]]
	if m[4] == "value out of range" {
		return fmt.Errorf("%s %s: out of range", m[2], m[1])
	}
	return fmt.Errorf("%s %s: want %s", m[2], m[1], want)
}
