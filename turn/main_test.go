package turn

import (
	"testing"

	"github.com/parley-meet/parley/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }
