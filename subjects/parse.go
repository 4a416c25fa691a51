package subjects

import (
	"fmt"
	"strings"
)

// Type says which contract subject a parsed subject is.
type Type int

// The subject types of the contract.
const (
	TypeMsg Type = iota + 1
	TypeRPC
	TypeStateCmd
	TypeStateEvt
	TypeStateGet
	TypeStateList
	TypeStateCommitted
	TypeStateStatus
	TypeAuditLog
	TypeAuditQuery
	TypeAuditVerify
	TypeAuditCommitted
	TypeAuditStatus
	TypeStateBadRequest
)

var typeNames = [...]string{
	TypeMsg: "msg", TypeRPC: "rpc", TypeStateCmd: "state.cmd", TypeStateEvt: "state.evt",
	TypeStateGet: "state.get", TypeStateList: "state.list", TypeStateCommitted: "state.committed",
	TypeStateStatus: "state.status", TypeAuditLog: "audit.log", TypeAuditQuery: "audit.query",
	TypeAuditVerify: "audit.verify", TypeAuditCommitted: "audit.committed", TypeAuditStatus: "audit.status",
	TypeStateBadRequest: "state.evt.bad_request",
}

// String names the type as its subject does, e.g. "state.cmd".
func (t Type) String() string {
	if t <= 0 || int(t) >= len(typeNames) {
		return fmt.Sprintf("Type(%d)", int(t))
	}
	return typeNames[t]
}

// Subject is a parsed codi2 subject. Only the fields of its Type are set;
// tokens are as they appear on the wire (still escaped).
type Subject struct {
	Type Type
	// To and From are the target and sender of a message or call.
	To, From string
	// Kind, ID and Actor are the state record and the command's sender.
	Kind, ID, Actor string
	// Source and Category name an audit event's origin.
	Source, Category string
	// Rest holds the trailing tokens: a message's type, a call's method, or
	// an audit subject's tokens after the category.
	Rest []string
}

// Parse reads a subject of the contract. It fails with ErrUnknown for a
// subject outside the contract and with the builders' errors for bad tokens.
// Parse and the builders agree: Parse(b) of any built subject b returns the
// values it was built from.
func Parse(subject string) (Subject, error) {
	toks := strings.Split(subject, ".")
	if len(toks) < 3 || toks[0] != "codi" {
		return Subject{}, fmt.Errorf("%w: %q", ErrUnknown, subject)
	}
	var (
		s   Subject
		err error
	)
	if subject == StateBadRequest {
		return Subject{Type: TypeStateBadRequest}, nil
	}
	switch toks[1] + "." + toks[2] {
	case "state.committed", "state.status", "audit.query", "audit.verify", "audit.committed", "audit.status":
		if len(toks) != 3 {
			break
		}
		s.Type = fixedTypes[toks[1]+"."+toks[2]]
		return s, nil
	}
	switch {
	case toks[1] == "msg" && len(toks) >= 5:
		s = Subject{Type: TypeMsg, To: toks[2], From: toks[3], Rest: toks[4:]}
		_, err = Msg(s.To, s.From, s.Rest...)
	case toks[1] == "rpc" && len(toks) >= 5:
		s = Subject{Type: TypeRPC, To: toks[2], From: toks[3], Rest: toks[4:]}
		_, err = RPC(s.To, s.From, s.Rest...)
	case toks[1] == "audit" && toks[2] == "log" && len(toks) >= 5:
		s = Subject{Type: TypeAuditLog, Source: toks[3], Category: toks[4]}
		if len(toks) > 5 {
			s.Rest = toks[5:]
		}
		_, err = AuditLog(s.Source, s.Category, s.Rest...)
	case toks[1] == "state" && len(toks) == 6 && toks[2] == "cmd":
		s = Subject{Type: TypeStateCmd, Kind: toks[3], ID: toks[4], Actor: toks[5]}
		_, err = StateCmd(s.Kind, s.ID, s.Actor)
	case toks[1] == "state" && len(toks) == 5 && (toks[2] == "evt" || toks[2] == "get"):
		s = Subject{Type: TypeStateEvt, Kind: toks[3], ID: toks[4]}
		if toks[2] == "get" {
			s.Type = TypeStateGet
		}
		err = kindID(s.Kind, s.ID)
	case toks[1] == "state" && len(toks) == 4 && toks[2] == "list":
		s = Subject{Type: TypeStateList, Kind: toks[3]}
		err = ValidKind(s.Kind)
	default:
		return Subject{}, fmt.Errorf("%w: %q", ErrUnknown, subject)
	}
	if err != nil {
		return Subject{}, fmt.Errorf("parse %q: %w", subject, err)
	}
	return s, nil
}

var fixedTypes = map[string]Type{
	"state.committed": TypeStateCommitted,
	"state.status":    TypeStateStatus,
	"audit.query":     TypeAuditQuery,
	"audit.verify":    TypeAuditVerify,
	"audit.committed": TypeAuditCommitted,
	"audit.status":    TypeAuditStatus,
}

// Token returns token i (from 0) of subject, or "" when it has fewer
// tokens. It does not validate or allocate: it is for hot paths that read a
// subject the server delivered, such as the source and category tokens
// (3 and 4) of an audit event whatever else its subject holds.
func Token(subject string, i int) string {
	for ; i > 0; i-- {
		_, rest, ok := strings.Cut(subject, ".")
		if !ok {
			return ""
		}
		subject = rest
	}
	tok, _, _ := strings.Cut(subject, ".")
	return tok
}

// Hint returns advice for a state command, get or list subject that Parse
// refused because an id holds '.', which splits it into several tokens:
// the id escaped into one token, e.g. for codi.state.get.file.src/main.go
// `the id "src/main.go" must be one token: escape it as "src/main%2Ego"
// (subjects.Escape)`. It returns "" for any other subject.
func Hint(subject string) string {
	toks := strings.Split(subject, ".")
	if len(toks) < 4 || toks[0] != "codi" || toks[1] != "state" {
		return ""
	}
	var id []string
	switch {
	case toks[2] == "cmd" && len(toks) > 6:
		id = toks[4 : len(toks)-1]
	case toks[2] == "get" && len(toks) > 5:
		id = toks[4:]
	case toks[2] == "list" && len(toks) > 4:
		return "a list subject is codi.state.list.<kind>: list takes no id"
	default:
		return ""
	}
	raw := strings.Join(id, ".")
	return fmt.Sprintf("the id %q must be one token: escape it as %q (subjects.Escape)", raw, Escape(raw))
}
