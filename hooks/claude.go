// Package hooks puts codi2 inside Claude Code's agent loop through its
// hooks (JSON on stdin, JSON on stdout, as Claude Code's hooks reference
// defines them): edits of files another agent reserved denied before they
// happen, the agent's presence kept alive, mail delivered into the
// session's context, file edits recorded in the audit log, a git
// pre-commit check of the same reservations, and `hooks install` to wire
// it up. Every hook fails open: a coordination tool that blocks an agent
// because it is itself down is worse than none.
package hooks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/cli"
	"github.com/codi2/codi2/internal/repo"
	"github.com/codi2/codi2/state"
	"github.com/codi2/codi2/subjects"
	"github.com/nats-io/nats.go"
)

// DefaultBudget bounds everything a hook does against the server, so that
// an unreachable codi2 costs the agent at most this long before the hook
// lets it go on.
const DefaultBudget = 300 * time.Millisecond

// FileTools are the Claude Code tools whose target is a file edit.
var FileTools = map[string]bool{"Edit": true, "Write": true, "MultiEdit": true, "NotebookEdit": true}

// Input is what Claude Code writes on a hook's stdin: the common fields and
// those of the events codi2 handles (Claude Code's hooks reference).
type Input struct {
	SessionID      string          `json:"session_id"`
	TranscriptPath string          `json:"transcript_path"`
	Cwd            string          `json:"cwd"`
	HookEventName  string          `json:"hook_event_name"`
	ToolName       string          `json:"tool_name"`
	ToolInput      json.RawMessage `json:"tool_input"`
	Prompt         string          `json:"prompt"`
	Source         string          `json:"source"`
	StopHookActive bool            `json:"stop_hook_active"`
}

// Output is what a hook writes on stdout. Empty fields are left out, so a
// hook with nothing to say writes {} and makes no decision.
type Output struct {
	// Decision "block" with Reason makes a Stop continue.
	Decision string `json:"decision,omitempty"`
	Reason   string `json:"reason,omitempty"`
	// SystemMessage is shown to the user (not the model).
	SystemMessage      string              `json:"systemMessage,omitempty"`
	HookSpecificOutput *HookSpecificOutput `json:"hookSpecificOutput,omitempty"`
}

// HookSpecificOutput carries a PreToolUse permission decision or context
// for the model. codi2 never sets permissionDecision "allow": that would
// skip the user's own permission prompt.
type HookSpecificOutput struct {
	HookEventName            string `json:"hookEventName"`
	PermissionDecision       string `json:"permissionDecision,omitempty"`
	PermissionDecisionReason string `json:"permissionDecisionReason,omitempty"`
	AdditionalContext        string `json:"additionalContext,omitempty"`
}

// Config is one hook invocation's settings.
type Config struct {
	// Agent is the agent id; empty derives it from the session
	// (AgentForSession).
	Agent   string
	NATSURL string
	Creds   string
	// Budget bounds the hook's work against the server. Default
	// DefaultBudget.
	Budget time.Duration
	// MaxMail bounds the messages one hook delivers. Default 10.
	MaxMail int
	// Project overrides the project name derived from the repository
	// (repo.Find), as the agent verbs' --project does.
	Project string
	// PresenceTTL is how long the agent's presence lasts after a hook's
	// heartbeat (SessionStart, UserPromptSubmit, PostToolUse, Stop).
	// Default DefaultPresenceTTL.
	PresenceTTL time.Duration
	// AutoReserve, when positive, makes PreToolUse reserve a free file for
	// the agent on its first edit, exclusively, bound to its presence, for
	// this long.
	AutoReserve time.Duration

	// derived is set when Agent came from the session id.
	derived bool
}

// DefaultPresenceTTL is the presence a hook's heartbeat gives the agent: a
// session that runs no hook for this long is no longer live, and what is
// bound to its presence (auto-reserved files) is released.
const DefaultPresenceTTL = 10 * time.Minute

// AgentForSession is the agent id of a Claude Code session that was given
// none: "claude-" and 8 hex digits of the SHA-256 of its session id, the
// same in every hook of the session whichever worktree it is in.
func AgentForSession(sessionID string) string {
	sum := sha256.Sum256([]byte(sessionID))
	return "claude-" + hex.EncodeToString(sum[:4])
}

// RunClaude handles one Claude Code hook event: it reads the input from in
// and writes the output to out. Whatever goes wrong (input it cannot read,
// a server that does not answer or refuses) is reported in the output's
// systemMessage and the agent goes on (fail open); it returns an error only
// when it cannot write its output.
func RunClaude(ctx context.Context, event string, cfg Config, in io.Reader, out io.Writer) error {
	var hi Input
	if err := json.NewDecoder(in).Decode(&hi); err != nil && !errors.Is(err, io.EOF) {
		// Fail open here too: Claude Code goes on, and the user is told.
		return json.NewEncoder(out).Encode(Output{SystemMessage: "codi2 " + event + " hook skipped: its input is not Claude Code's hook JSON: " + err.Error()})
	}
	if cfg.Budget <= 0 {
		cfg.Budget = DefaultBudget
	}
	if cfg.MaxMail <= 0 {
		cfg.MaxMail = 10
	}
	if cfg.Agent == "" {
		cfg.Agent, cfg.derived = AgentForSession(hi.SessionID), true
	}
	if cfg.NATSURL == "" {
		cfg.NATSURL = cli.DefaultNATSURL
	}
	if cfg.PresenceTTL <= 0 {
		cfg.PresenceTTL = DefaultPresenceTTL
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Budget)
	defer cancel()
	o, err := handle(ctx, event, cfg, hi)
	if err != nil {
		o = Output{SystemMessage: "codi2 " + event + " hook skipped: " + err.Error()}
	}
	return json.NewEncoder(out).Encode(o)
}

// Events are the Claude Code hook events codi2 acts on, as `codi2 hook
// claude EVENT` takes them (case sensitive, as in Claude Code's settings).
var Events = []string{"SessionStart", "UserPromptSubmit", "PreToolUse", "PostToolUse", "Stop", "SessionEnd"}

func handle(ctx context.Context, event string, cfg Config, hi Input) (Output, error) {
	switch event {
	case "SessionStart", "UserPromptSubmit", "PostToolUse", "Stop", "PreToolUse", "SessionEnd":
	case "Notification", "SubagentStop", "PreCompact":
		return Output{}, nil // a Claude Code event codi2 has nothing for: no decision
	default:
		// Most likely a typo in the settings (event names are case
		// sensitive): say so rather than silently guard nothing.
		return Output{}, fmt.Errorf("%q is not a Claude Code hook event codi2 knows (%s)", event, strings.Join(Events, ", "))
	}
	if err := subjects.ValidAgent(cfg.Agent); err != nil {
		return Output{}, fmt.Errorf("agent id %q: %w", cfg.Agent, err)
	}
	var target Target
	if event == "PreToolUse" {
		// Only file edits are checked (Bash is left alone), and only in a
		// repository codi2 can name; no decision otherwise, never "allow",
		// which would skip the user's permission prompt.
		p := toolPath(hi)
		if !FileTools[hi.ToolName] || p == "" {
			return Output{}, nil
		}
		var err error
		if target, err = FindTarget(ctx, hi.Cwd, p, cfg.Project); err != nil {
			return Output{}, err
		}
	}
	// A refused publish or subscription (credentials of another agent)
	// arrives asynchronously: end the hook at once instead of waiting out
	// the budget.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// The connection gets what is left of the budget (git may have used
	// some), so that a server that takes the connection and never answers
	// costs the agent no more than the budget in all.
	left := cfg.Budget
	if dl, ok := ctx.Deadline(); ok {
		left = max(time.Until(dl), time.Millisecond)
	}
	opts := []nats.Option{nats.Name("codi2 hook " + event), nats.Timeout(left), nats.NoReconnect(),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				cancel(fmt.Errorf("codi2 refused %s: %w (check CODI2_AGENT and CODI2_CREDS)", cfg.Agent, err))
			}
		})}
	if cfg.Creds != "" {
		opts = append(opts, bus.Credentials(cfg.Creds))
	}
	nc, err := nats.Connect(cfg.NATSURL, opts...)
	switch {
	case errors.Is(err, nats.ErrAuthorization):
		return Output{}, fmt.Errorf("codi2 at %s refused the credentials (none, revoked, or for another server)", cfg.NATSURL)
	case err != nil:
		return Output{}, fmt.Errorf("codi2 unreachable at %s", cfg.NATSURL)
	}
	defer nc.Close()
	a, err := bus.NewAgent(cfg.Agent, nc)
	if err != nil {
		return Output{}, err
	}
	sc, err := state.NewClient(nc, cfg.Agent)
	if err != nil {
		return Output{}, err
	}
	var out Output
	switch event {
	case "PreToolUse":
		out, err = preToolUse(ctx, sc, cfg, target)
	case "PostToolUse":
		out, err = postToolUse(ctx, a, sc, nc, cfg, hi)
	case "Stop":
		out, err = stop(ctx, a, sc, cfg, hi)
	case "SessionStart":
		out, err = sessionStart(ctx, a, sc, cfg, hi)
	case "SessionEnd":
		out = sessionEnd(ctx, sc, cfg)
	default:
		note := heartbeat(ctx, sc, cfg, hi, "")
		var mail string
		mail, err = deliver(ctx, a, cfg.MaxMail, nil)
		out = withContext(event, mail)
		out.SystemMessage = note
	}
	if cause := context.Cause(ctx); err != nil && cause != nil && !errors.Is(cause, context.DeadlineExceeded) && !errors.Is(cause, context.Canceled) {
		err = cause
	}
	return out, err
}

// sessionEnd signs the agent off, so that what is bound to its presence
// (reservations, claims) is released now rather than when the presence
// lapses. SessionEnd cannot block and takes only the common output fields
// (Claude Code's hooks reference); a failure is a systemMessage.
func sessionEnd(ctx context.Context, sc *state.Client, cfg Config) Output {
	if err := sc.SignOff(ctx); err != nil && !errors.Is(err, state.ErrNotFound) {
		return Output{SystemMessage: "codi2: " + cfg.Agent + " not signed off: " + err.Error()}
	}
	return Output{}
}

// agentFlag is what a codi2 command the hook suggests to the model needs to
// act as this agent: nothing when the id came from CODI2_AGENT (the
// model's shell has it too), " --agent ID" when it was derived from the
// session, which a shell cannot know.
func (c Config) agentFlag() string {
	if c.derived {
		return " --agent " + c.Agent
	}
	return ""
}

// heartbeat keeps the agent's presence alive for cfg.PresenceTTL, with the
// session id, the host and the work tree (root, when known) as its fields.
// A failure does not stop the hook: it is returned as a note for the
// output's systemMessage ("" when it worked).
func heartbeat(ctx context.Context, sc *state.Client, cfg Config, hi Input, root string) string {
	fields := map[string]any{"session": hi.SessionID}
	if host, err := os.Hostname(); err == nil {
		fields["host"] = host
	}
	if root != "" {
		fields["worktree"] = root
	}
	if _, err := sc.Heartbeat(ctx, cfg.PresenceTTL, fields); err != nil {
		return "codi2: presence of " + cfg.Agent + " not renewed: " + err.Error()
	}
	return ""
}

// sessionStart renews the agent's presence and gives the model its mail
// and a summary of what it holds: its reservations in the project of the
// session's directory, and its task claims.
func sessionStart(ctx context.Context, a *bus.Agent, sc *state.Client, cfg Config, hi Input) (Output, error) {
	project, root := cfg.Project, ""
	if hi.Cwd != "" {
		if r, err := repo.Find(ctx, hi.Cwd); err == nil || errors.Is(err, repo.ErrNoCommits) {
			root = r.Root
			if project == "" {
				project = r.Project
			}
		}
	}
	note := heartbeat(ctx, sc, cfg, hi, root)
	held, err := holdings(ctx, sc, project)
	if err != nil {
		return Output{}, err
	}
	if cfg.derived {
		// An id derived from this session is new: its inbox begins now,
		// not with the broadcasts CODI_MSG holds from before it existed
		// (a new user's input: every session replayed a week of them).
		if err := a.Open(ctx, bus.DeliverNew); err != nil {
			return Output{}, err
		}
	}
	mail, err := deliver(ctx, a, cfg.MaxMail, nil)
	if cfg.derived {
		// The model needs its id to be told apart in messages and
		// reservations, and to give it to codi2 commands it runs.
		held = "codi2: this session is agent " + cfg.Agent + " (derived from the session id; set CODI2_AGENT to choose one).\n" + held
	}
	text := strings.Trim(held+"\n"+mail, "\n")
	out := withContext("SessionStart", text)
	out.SystemMessage = note
	if err != nil && mail == "" {
		return Output{}, err
	}
	return out, nil
}

// withContext is an Output that gives the model text as additional
// context.
func withContext(event, text string) Output {
	if text == "" {
		return Output{}
	}
	return Output{HookSpecificOutput: &HookSpecificOutput{HookEventName: event, AdditionalContext: text}}
}

// deliver fetches and acks up to max pending messages and words them for
// the model. With want set, it delivers only when some pending message
// passes want, and then everything up to the last such message (mail is
// taken in stream order). It peeks first and then takes exactly what it
// saw: a catch-up that finds nothing would wait out the bus's idle wait
// (200 ms) to be sure, most of a hook's budget.
func deliver(ctx context.Context, a *bus.Agent, max int, want func(bus.Message) bool) (string, error) {
	var lines []string
	pending, err := a.Peek(ctx, max)
	if err != nil {
		return "", err
	}
	n := 0
	for i, m := range pending {
		if want == nil || want(m) {
			n = i + 1
		}
	}
	if n == 0 {
		return "", nil
	}
	max = n
	err = a.Receive(ctx, bus.ReceiveConfig{UntilIdle: true, Max: max}, func(_ context.Context, m bus.Message) error {
		lines = append(lines, cli.MailOf(m).Text())
		return nil
	})
	if err != nil && len(lines) == 0 {
		return "", err
	}
	if len(lines) == 0 {
		return "", nil
	}
	return fmt.Sprintf("codi2 mail for %s (%d, now acknowledged):\n%s", a.ID(), len(lines), strings.Join(lines, "\n")), nil
}

// FileWrite is the payload of the file.write audit event PostToolUse
// records for a file edit.
type FileWrite struct {
	Path    string `json:"path"`
	Tool    string `json:"tool"`
	Agent   string `json:"agent"`
	Session string `json:"session"`
	Project string `json:"project,omitempty"`
	// Size (bytes) and SHA256 (lower-case hex) of the file after the
	// edit, as codi2 watch --files records them, so the two events of
	// one edit are recognisable as one change; absent when the file cannot
	// be read or is larger than MaxHashBytes.
	Size   *int64 `json:"size,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
}

// MaxHashBytes bounds the file PostToolUse hashes, so that the hook stays
// within its budget.
const MaxHashBytes = 16 << 20

// hashFile returns the size and SHA-256 of the file at p, or nothing.
func hashFile(p string) (*int64, string) {
	f, err := os.Open(p)
	if err != nil {
		return nil, ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() || fi.Size() > MaxHashBytes {
		return nil, ""
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return nil, ""
	}
	return &n, hex.EncodeToString(h.Sum(nil))
}

func postToolUse(ctx context.Context, a *bus.Agent, sc *state.Client, nc *nats.Conn, cfg Config, hi Input) (Output, error) {
	if FileTools[hi.ToolName] {
		if err := recordWrite(ctx, nc, cfg, hi); err != nil {
			return Output{}, err
		}
	}
	note := heartbeat(ctx, sc, cfg, hi, "")
	pending, err := a.Peek(ctx, cfg.MaxMail)
	if err != nil || len(pending) == 0 {
		return Output{SystemMessage: note}, err
	}
	from := map[string]bool{}
	var names []string
	for _, m := range pending {
		if !from[m.From] {
			from[m.From] = true
			names = append(names, m.From)
		}
	}
	more := ""
	if len(pending) == cfg.MaxMail {
		more = "+"
	}
	out := withContext("PostToolUse", fmt.Sprintf("codi2: %d%s new message(s) for %s from %s; read them with `codi2 inbox%s` or the inbox tool.",
		len(pending), more, a.ID(), strings.Join(names, ", "), cfg.agentFlag()))
	out.SystemMessage = note
	return out, nil
}

func recordWrite(ctx context.Context, nc *nats.Conn, cfg Config, hi Input) error {
	p := toolPath(hi)
	if p == "" {
		return nil
	}
	fw := FileWrite{Path: p, Tool: hi.ToolName, Agent: cfg.Agent, Session: hi.SessionID}
	abs := p
	if !filepath.IsAbs(abs) && hi.Cwd != "" {
		abs = filepath.Join(hi.Cwd, abs)
	}
	fw.Size, fw.SHA256 = hashFile(abs)
	dir := hi.Cwd
	if dir == "" {
		dir = filepath.Dir(p)
	}
	// Relative to the repository's root, also in one without commits yet
	// (which has no project name).
	if r, err := repo.Find(ctx, dir); err == nil || errors.Is(err, repo.ErrNoCommits) {
		if rel, err := r.Path(hi.Cwd, p); err == nil {
			fw.Path, fw.Project = rel, r.Project
		}
	}
	data, err := json.Marshal(fw)
	if err != nil {
		return err
	}
	ac, err := audit.NewClient(nc)
	if err != nil {
		return err
	}
	defer ac.Close()
	_, err = ac.Log(ctx, cfg.Agent, "file", data, audit.WithTokens("write"))
	return err
}

// stop blocks the session's stop once when urgent mail is waiting, handing
// the mail over as the reason. Never when stop_hook_active: a stop that a
// hook already continued is let go, so the session cannot loop.
func stop(ctx context.Context, a *bus.Agent, sc *state.Client, cfg Config, hi Input) (Output, error) {
	note := heartbeat(ctx, sc, cfg, hi, "")
	if hi.StopHookActive {
		return Output{SystemMessage: note}, nil
	}
	mail, err := deliver(ctx, a, cfg.MaxMail, func(m bus.Message) bool {
		return m.Header.Get(cli.HeaderImportance) == "urgent"
	})
	if err != nil || mail == "" {
		return Output{SystemMessage: note}, err
	}
	return Output{SystemMessage: note, Decision: "block", Reason: "Urgent " + mail + "\nHandle it before you stop."}, nil
}
