package kfast

import (
	"testing"

	"icegate/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m, "icegate/internal/kfast.") }
