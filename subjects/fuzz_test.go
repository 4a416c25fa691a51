package subjects

import (
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// FuzzEscape checks that any string escapes to a valid subject token that
// round-trips, and that subjects built from it are valid NATS subjects that
// parse back to the same tokens.
func FuzzEscape(f *testing.F) {
	for _, s := range []string{"src/main.go", "a b", "%", "\x00", "ü", "\xff\xfe", "all", "a>b*c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok := Escape(s)
		back, err := Unescape(tok)
		if err != nil || back != s {
			t.Fatalf("round trip %q -> %q -> %q, %v", s, tok, back, err)
		}
		if s == "" || len(tok) > MaxTokenLen {
			return
		}
		if err := ValidToken(tok); err != nil {
			t.Fatalf("Escape(%q) = %q is not a token: %v", s, tok, err)
		}
		subj, err := StateCmd("file", tok, "agent-1")
		if err != nil {
			t.Fatal(err)
		}
		if !server.IsValidSubject(subj) {
			t.Fatalf("%q is not a valid NATS subject", subj)
		}
		p, err := Parse(subj)
		if err != nil || p.ID != tok {
			t.Fatalf("Parse(%q) = %+v, %v", subj, p, err)
		}
	})
}

// FuzzUnescape checks that Unescape accepts exactly the strings Escape
// returns: whatever it accepts escapes back to itself, and ValidToken agrees
// with it on every token that is otherwise well formed.
func FuzzUnescape(f *testing.F) {
	for _, s := range []string{"src/main%2Ego", "src/main%2ego", "%61", "%ZZ", "%", "%2", "%C3%BC", "\xC3%BC",
		"%FF", "a.b", "a b", "%25%25", "ü%2Eñ", "%C2%A0", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		s, err := Unescape(tok)
		if err != nil {
			if !errors.Is(err, ErrBadEscape) {
				t.Fatalf("Unescape(%q) failed without ErrBadEscape: %v", tok, err)
			}
			if ValidToken(tok) == nil {
				t.Fatalf("ValidToken accepted %q, which Unescape refuses: %v", tok, err)
			}
			return
		}
		if got := Escape(s); got != tok {
			t.Fatalf("Unescape(%q) = %q, which escapes to %q: two spellings", tok, s, got)
		}
	})
}

// FuzzParse checks that Parse never accepts a subject that NATS would reject
// and that every accepted subject rebuilds to itself.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"codi.msg.a.b.c", "codi.rpc.a.b.c.d", "codi.state.cmd.task.x.a", "codi.state.evt.task.x",
		"codi.state.get.t.x", "codi.state.list.t", "codi.audit.log.s.c.m", "codi.audit.query", "codi.msg..a.b", "codi.msg.a b.c.d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, subj string) {
		p, err := Parse(subj)
		if err != nil {
			return
		}
		if !server.IsValidSubject(subj) || strings.ContainsAny(subj, "*>") {
			t.Fatalf("Parse accepted %q that is not a literal NATS subject", subj)
		}
		var rebuilt string
		switch p.Type {
		case TypeMsg:
			rebuilt, err = Msg(p.To, p.From, p.Rest...)
		case TypeRPC:
			rebuilt, err = RPC(p.To, p.From, p.Rest...)
		case TypeStateCmd:
			rebuilt, err = StateCmd(p.Kind, p.ID, p.Actor)
		case TypeStateEvt:
			rebuilt, err = StateEvt(p.Kind, p.ID)
		case TypeStateGet:
			rebuilt, err = StateGet(p.Kind, p.ID)
		case TypeStateList:
			rebuilt, err = StateList(p.Kind)
		case TypeAuditLog:
			rebuilt, err = AuditLog(p.Source, p.Category, p.Rest...)
		default:
			rebuilt = "codi." + p.Type.String()
		}
		if err != nil || rebuilt != subj {
			t.Fatalf("Parse(%q) = %+v rebuilds to %q, %v", subj, p, rebuilt, err)
		}
	})
}
