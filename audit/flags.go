package audit

import (
	"strings"

	"github.com/codi2/codi2/subjects"
)

// Flags a record carries in its "flags" member when its subject is not one
// the contract allows. CODI_AUDIT takes any subject under codi.audit.log.>,
// and an acknowledged event is never dropped, so such an event is recorded
// as it came and flagged; Status.Flagged counts them. The values are
// stable: match on them.
const (
	// FlagNoCategory: the subject has no category token
	// (codi.audit.log.<source>); the record's category is "".
	FlagNoCategory = "no_category"
	// FlagBadSource: the source token is not a valid token (over 256
	// bytes, a non-canonical %XX escape, empty).
	FlagBadSource = "bad_source"
	// FlagBadCategory: the category token is not a valid token.
	FlagBadCategory = "bad_category"
	// FlagBadToken: a token after the category is not a valid token.
	FlagBadToken = "bad_token"
)

// subjectFlags returns the flags of an audit event's subject, nil for a
// subject the contract allows, and a line of detail for the log.
func subjectFlags(subject, source, category string) (flags []string, detail string) {
	if plainTail(subject) {
		return nil, ""
	}
	return checkSubject(subject, source, category)
}

// checkSubject is subjectFlags without the shortcut for plain subjects.
func checkSubject(subject, source, category string) (flags []string, detail string) {
	note := func(flag string, err error) {
		flags = append(flags, flag)
		if detail == "" && err != nil {
			detail = err.Error()
		}
	}
	if err := subjects.ValidToken(source); err != nil {
		note(FlagBadSource, err)
	}
	// codi.audit.log.<source>.<category>[.<rest>]: the category is there
	// when the subject has a fifth token; rest is what follows it.
	tail, hasCategory := subject, true
	for range 4 {
		_, after, ok := strings.Cut(tail, ".")
		if !ok {
			hasCategory = false
			break
		}
		tail = after
	}
	rest, hasRest := "", false
	if hasCategory {
		_, rest, hasRest = strings.Cut(tail, ".")
	}
	switch {
	case !hasCategory:
		note(FlagNoCategory, nil)
		if detail == "" {
			detail = "the subject has no category token: codi.audit.log.<source>.<category>"
		}
	default:
		if err := subjects.ValidToken(category); err != nil {
			note(FlagBadCategory, err)
		}
	}
	if hasRest {
		for tok := range strings.SplitSeq(rest, ".") {
			if err := subjects.ValidToken(tok); err != nil {
				note(FlagBadToken, err)
				break
			}
		}
	}
	return flags, detail
}

// plainTail reports whether the tokens of subject from the fourth on
// (source, category, more) are at least two and all plainToken: then
// subjectFlags has nothing to say, and the intake skips its full checks
// (subjects.ValidToken decodes runes, and looks up white space and
// control characters in Unicode's tables).
func plainTail(subject string) bool {
	rest := subject
	for range 3 {
		i := strings.IndexByte(rest, '.')
		if i < 0 {
			return false
		}
		rest = rest[i+1:]
	}
	for n := 1; ; n++ {
		tok, after, more := strings.Cut(rest, ".")
		if !plainToken(tok) {
			return false
		}
		if !more {
			return n >= 2
		}
		rest = after
	}
}

// plainToken reports whether tok is a token that subjects.ValidToken
// accepts without looking further: 1 to subjects.MaxTokenLen printable
// ASCII bytes, none of them '.', '*', '>' or '%' (which starts an escape
// to check). Anything else may be valid too; subjects.ValidToken decides.
func plainToken(tok string) bool {
	if tok == "" || len(tok) > subjects.MaxTokenLen {
		return false
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c <= ' ' || c >= 0x7f || c == '.' || c == '*' || c == '>' || c == '%' {
			return false
		}
	}
	return true
}
