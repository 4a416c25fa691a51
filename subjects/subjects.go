package subjects

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxTokenLen is the longest token, in bytes.
const MaxTokenLen = 256

// All is the message target that means every agent. No agent may use it as
// its own id.
const All = "all"

// Fixed subjects and the wildcards the streams and services listen on.
const (
	// MsgWildcard matches every durable agent message (stream CODI_MSG).
	MsgWildcard = "codi.msg.>"
	// RPCWildcard matches every live call.
	RPCWildcard = "codi.rpc.>"
	// StateCmdWildcard matches every state command (stream CODI_STATE).
	StateCmdWildcard = "codi.state.cmd.>"
	// StateEvtWildcard matches every state event.
	StateEvtWildcard = "codi.state.evt.>"
	// StateGetWildcard matches every get request, codi.state.get.<kind>.<id>,
	// and malformed ones (an id split by '.'), so that the service answers
	// them with a 400 instead of leaving them without a responder.
	StateGetWildcard = "codi.state.get.>"
	// StateListWildcard matches every list request, codi.state.list.<kind>,
	// and malformed ones, for the same reason.
	StateListWildcard = "codi.state.list.>"
	// StateBadRequest carries the rejection of every command whose subject
	// does not parse (too many tokens, a bad kind, id or actor), with the
	// raw subject; such a command names no record to report on.
	StateBadRequest = "codi.state.evt.bad_request"
	// StateCommitted carries the state service's commit watermark.
	StateCommitted = "codi.state.committed"
	// StateStatus answers the state service's commit watermark.
	StateStatus = "codi.state.status"
	// AuditLogWildcard matches every audit event (stream CODI_AUDIT).
	AuditLogWildcard = "codi.audit.log.>"
	// AuditQuery answers audit records by time range and filters.
	AuditQuery = "codi.audit.query"
	// AuditVerify checks the audit hash chain.
	AuditVerify = "codi.audit.verify"
	// AuditCommitted carries the audit service's commit watermark.
	AuditCommitted = "codi.audit.committed"
	// AuditStatus answers the audit watermark and log size.
	AuditStatus = "codi.audit.status"
)

const (
	msgPrefix   = "codi.msg."
	rpcPrefix   = "codi.rpc."
	cmdPrefix   = "codi.state.cmd."
	evtPrefix   = "codi.state.evt."
	getPrefix   = "codi.state.get."
	listPrefix  = "codi.state.list."
	auditPrefix = "codi.audit.log."
	wildSuffix  = ".>"
)

var kindRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

// ValidToken reports whether tok can stand as one token of a codi2 subject:
// non-empty, at most MaxTokenLen bytes of UTF-8, with no whitespace, control
// characters, '.', '*' or '>', and every '%' the start of a canonical escape
// (Unescape accepts it: one spelling per string). Use Escape to turn any
// string into a token. A bad escape fails with both ErrBadToken and
// ErrBadEscape.
func ValidToken(tok string) error {
	if tok == "" {
		return fmt.Errorf("%w: empty", ErrBadToken)
	}
	if len(tok) > MaxTokenLen {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrBadToken, len(tok), MaxTokenLen)
	}
	if !utf8.ValidString(tok) {
		return fmt.Errorf("%w: %q is not UTF-8", ErrBadToken, tok)
	}
	for _, r := range tok {
		if r == '.' || r == '*' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("%w: %q holds %q", ErrBadToken, tok, r)
		}
	}
	if strings.IndexByte(tok, '%') >= 0 {
		if _, err := Unescape(tok); err != nil {
			return fmt.Errorf("%w: %w", ErrBadToken, err)
		}
	}
	return nil
}

// ValidKind reports whether kind is a state kind: [a-z][a-z0-9_-]{0,31}.
func ValidKind(kind string) error {
	if !kindRE.MatchString(kind) {
		return fmt.Errorf("%w: %q must match [a-z][a-z0-9_-]{0,31}", ErrBadKind, kind)
	}
	return nil
}

// ValidAgent reports whether id can be an agent's own id: a valid token other
// than the reserved target All.
func ValidAgent(id string) error {
	if err := ValidToken(id); err != nil {
		return fmt.Errorf("agent id: %w", err)
	}
	if id == All {
		return fmt.Errorf("%w: %q is the broadcast target", ErrReserved, id)
	}
	return nil
}

func validTarget(to string) error {
	if to == All {
		return nil
	}
	return ValidAgent(to)
}

func validTokens(what string, toks []string) error {
	if len(toks) == 0 {
		return fmt.Errorf("%s: %w: at least one token is required", what, ErrBadToken)
	}
	for _, t := range toks {
		if err := ValidToken(t); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	return nil
}

// Msg returns codi.msg.<to>.<from>.<typ…>: a durable message from agent from
// to agent to (or to All). typ is one or more tokens such as "task", "assign".
func Msg(to, from string, typ ...string) (string, error) {
	if err := validTarget(to); err != nil {
		return "", fmt.Errorf("msg to: %w", err)
	}
	if err := ValidAgent(from); err != nil {
		return "", fmt.Errorf("msg from: %w", err)
	}
	if err := validTokens("msg type", typ); err != nil {
		return "", err
	}
	return msgPrefix + to + "." + from + "." + strings.Join(typ, "."), nil
}

// MsgInbox returns codi.msg.<agent>.>: everything sent to agent directly.
// Together with MsgBroadcast it is an agent's whole inbox.
func MsgInbox(agent string) (string, error) {
	if err := ValidAgent(agent); err != nil {
		return "", err
	}
	return msgPrefix + agent + wildSuffix, nil
}

// MsgBroadcast is codi.msg.all.>: every message sent to all agents.
const MsgBroadcast = msgPrefix + All + wildSuffix

// RPC returns codi.rpc.<to>.<from>.<method…>: a live call from agent from to
// agent to. Calls are never stored and go to one agent, so to may not be All.
func RPC(to, from string, method ...string) (string, error) {
	if err := ValidAgent(to); err != nil {
		return "", fmt.Errorf("rpc to: %w", err)
	}
	if err := ValidAgent(from); err != nil {
		return "", fmt.Errorf("rpc from: %w", err)
	}
	if err := validTokens("rpc method", method); err != nil {
		return "", err
	}
	return rpcPrefix + to + "." + from + "." + strings.Join(method, "."), nil
}

// RPCInbox returns codi.rpc.<agent>.>: every call made to agent.
func RPCInbox(agent string) (string, error) {
	if err := ValidAgent(agent); err != nil {
		return "", err
	}
	return rpcPrefix + agent + wildSuffix, nil
}

func kindID(kind, id string) error {
	if err := ValidKind(kind); err != nil {
		return err
	}
	if err := ValidToken(id); err != nil {
		return fmt.Errorf("state id: %w", err)
	}
	return nil
}

// StateCmd returns codi.state.cmd.<kind>.<id>.<actor>: a state change command.
func StateCmd(kind, id, actor string) (string, error) {
	if err := kindID(kind, id); err != nil {
		return "", err
	}
	if err := ValidAgent(actor); err != nil {
		return "", fmt.Errorf("actor: %w", err)
	}
	return cmdPrefix + kind + "." + id + "." + actor, nil
}

// StateEvt returns codi.state.evt.<kind>.<id>: the outcome of each command.
func StateEvt(kind, id string) (string, error) {
	if err := kindID(kind, id); err != nil {
		return "", err
	}
	return evtPrefix + kind + "." + id, nil
}

// StateGet returns codi.state.get.<kind>.<id>: read one record.
func StateGet(kind, id string) (string, error) {
	if err := kindID(kind, id); err != nil {
		return "", err
	}
	return getPrefix + kind + "." + id, nil
}

// StateList returns codi.state.list.<kind>: list the records of a kind.
func StateList(kind string) (string, error) {
	if err := ValidKind(kind); err != nil {
		return "", err
	}
	return listPrefix + kind, nil
}

// AuditLog returns codi.audit.log.<source>.<category>[.<more>…]: an audit
// event from source.
func AuditLog(source, category string, more ...string) (string, error) {
	if err := ValidToken(source); err != nil {
		return "", fmt.Errorf("audit source: %w", err)
	}
	if err := ValidToken(category); err != nil {
		return "", fmt.Errorf("audit category: %w", err)
	}
	s := auditPrefix + source + "." + category
	if len(more) > 0 {
		if err := validTokens("audit subject", more); err != nil {
			return "", err
		}
		s += "." + strings.Join(more, ".")
	}
	return s, nil
}
