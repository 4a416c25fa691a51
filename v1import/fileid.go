package v1import

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math"
)

// maxIDLine bounds the bytes of the first line a file's id is taken from.
const maxIDLine = 4096

// FileID derives a file's identity from its first non-blank line (white
// space only is blank): 16 hex digits of the SHA-256 of that line's first
// 4 KiB, without its newline, once the line has its newline or is 4 KiB
// long, so that nothing v1 appends can change it. The same for a copy of
// the file and for the file after v1 appended more; distinct for logs
// whose first events differ, whatever blank lines precede them. ok is
// false while the file has no such line (empty, blank lines only, or a
// first line still without its newline): it has no id yet.
//
// A UTF-8 byte-order mark at the start of the file is not part of the
// line: a copy saved with one (by an editor) has the file's id, so that it
// is recognised, and refused, rather than imported a second time.
func FileID(f io.ReaderAt) (id string, ok bool, err error) {
	br := bufio.NewReaderSize(io.NewSectionReader(f, 0, math.MaxInt64), 64<<10)
	if start, _ := br.Peek(len(utf8BOM)); bytes.Equal(start, utf8BOM) {
		_, _ = br.Discard(len(utf8BOM))
	}
	for {
		head, blank, complete, err := lineHead(br)
		if err != nil {
			return "", false, err
		}
		if !complete {
			return "", false, nil
		}
		if !blank {
			return hashID(head), true, nil
		}
	}
}

// utf8BOM is the byte-order mark some editors write at the start of a
// UTF-8 file (U+FEFF encoded).
var utf8BOM = []byte{0xef, 0xbb, 0xbf}

// lineHead reads one line of br and returns its first maxIDLine bytes
// (without the newline), whether those are blank, and whether they are
// final: the line has its newline or is maxIDLine bytes long. At the end
// of the file without either, complete is false.
func lineHead(br *bufio.Reader) (head []byte, blank, complete bool, err error) {
	for {
		chunk, rerr := br.ReadSlice('\n')
		body := bytes.TrimSuffix(chunk, []byte{'\n'})
		head = append(head, body[:min(len(body), maxIDLine-len(head))]...)
		blank = len(bytes.TrimSpace(head)) == 0
		switch {
		case len(chunk) > len(body): // the newline
			return head, blank, true, nil
		case len(head) >= maxIDLine && !blank:
			return head, false, true, nil
		case errors.Is(rerr, bufio.ErrBufferFull):
			continue
		case errors.Is(rerr, io.EOF):
			return head, blank, false, nil
		case rerr != nil:
			return nil, false, false, rerr
		}
	}
}

func hashID(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// legacyIDs are the ids the rule before this one (the SHA-256 of the
// file's first 4 KiB up to and with the first newline, or of all of them
// when none) gave this file at some earlier size, besides id: its first
// line with its newline, and, for a first line v1 appended to after an
// import had seen only its first event, that event. A checkpoint under
// one of them whose bytes match is this file's (see Import). blank says
// the first line is blank: its legacy id is shared by every log starting
// with a blank line, so a checkpoint under it whose bytes differ is
// another log's.
func legacyIDs(f io.ReaderAt, id string) (ids []string, blank bool, err error) {
	buf := make([]byte, maxIDLine)
	n, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, false, err
	}
	buf = buf[:n]
	var out []string
	add := func(b []byte) {
		if c := hashID(b); c != id && (len(out) == 0 || out[len(out)-1] != c) {
			out = append(out, c)
		}
	}
	line := buf
	if i := bytes.IndexByte(buf, '\n'); i >= 0 {
		line = buf[:i]
		add(buf[:i+1])
	}
	if n := objectPrefix(line); n > 0 {
		add(line[:n])
	}
	return out, len(bytes.TrimSpace(line)) == 0, nil
}
