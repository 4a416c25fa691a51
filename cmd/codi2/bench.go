package main

import (
	"context"
	"errors"
	"io"
)

// runBench runs `codi2 bench`.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("bench: not implemented yet")
}
