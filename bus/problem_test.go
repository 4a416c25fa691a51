package bus_test

import (
	"errors"
	"testing"

	"github.com/codi2/codi2/bus"
	"github.com/stretchr/testify/assert"
)

func TestProblem(t *testing.T) {
	var p bus.Problem
	assert.NoError(t, p.Err())
	gone := errors.New("stream gone")
	p.Set(gone)
	assert.Equal(t, gone, p.Err())
	p.Set(nil)
	assert.NoError(t, p.Err())
}
