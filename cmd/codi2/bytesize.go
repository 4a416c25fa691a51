package main

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/codi2/codi2/bus"
)

// byteUnits are the suffixes parseBytes accepts, upper-cased: binary
// (KiB, MiB, GiB, TiB) and decimal (KB, MB, GB, TB) multiples of a byte.
var byteUnits = map[string]float64{
	"": 1, "B": 1,
	"KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40,
	"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40,
	"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
}

// parseBytes reads a size in bytes: a non-negative number, optionally with
// a fraction, and an optional unit (case-insensitive; K, M, G, T and KiB...
// are powers of 1024, KB... powers of 1000), with optional space between:
// "0", "1048576", "512MiB", "1.5 GiB", "2GB". The result is rounded down
// to a whole byte and must fit an int64.
func parseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		i = len(t)
	}
	num, unit := t[:i], strings.ToUpper(strings.TrimSpace(t[i:]))
	mul, ok := byteUnits[unit]
	if num == "" || !ok {
		return 0, fmt.Errorf("size %q: want a number of bytes with an optional unit (KiB, MiB, GiB, TiB, KB, MB, GB, TB)", s)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, errors.Unwrap(err))
	}
	n := math.Floor(v * mul)
	if n >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return int64(n), nil
}

// byteSize is a flag.Value holding a size in bytes; 0 shows as "derived".
type byteSize int64

func (b *byteSize) String() string {
	if *b == 0 {
		return "0"
	}
	return bus.FormatBytes(int64(*b))
}

func (b *byteSize) Set(s string) error {
	n, err := parseBytes(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}
