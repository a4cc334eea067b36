package policy

import (
	"math/big"
	"math/rand"
	"strconv"
	"testing"
)

func TestCompareDecimal(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"100", "100", 0},
		{"100", "100.0", 0},
		{"100.5", "100", 1},
		{"100.00000000000001", "100", 1},
		{"99.999999999999999999", "100", -1},
		{"1e2", "100", 0},
		{"1E+2", "99", 1},
		{"-0", "0", 0},
		{"-0.0", "0e10", 0},
		{"-1", "0", -1},
		{"-2", "-10", 1},
		{"0.001", "1e-3", 0},
		{"12345678901234567890123", "12345678901234567890122", 1},
		{"0.1", "0.09", 1},
		{"5", "50e-1", 0},
	}
	for _, tt := range tests {
		da, oka := parseDecimal(tt.a)
		db, okb := parseDecimal(tt.b)
		if !oka || !okb {
			t.Fatalf("parse %s/%s failed", tt.a, tt.b)
		}
		if got := compareDecimal(tt.a, &da, tt.b, &db); got != tt.want {
			t.Errorf("compare(%s, %s) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestParseDecimalRejectsNonJSON(t *testing.T) {
	for _, s := range []string{"", "-", "+1", "01", "1.", ".5", "1e", "1e+", "0x10", "1_000", "NaN", "1e9999999", " 1", "1 "} {
		if _, ok := parseDecimal(s); ok {
			t.Errorf("%q accepted", s)
		}
	}
}

// TestCompareDecimalAgainstBigRat checks random numbers against math/big.
func TestCompareDecimalAgainstBigRat(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 5000; i++ {
		a, b := randomNumber(r), randomNumber(r)
		da, _ := parseDecimal(a)
		db, _ := parseDecimal(b)
		ra, _ := new(big.Rat).SetString(a)
		rb, _ := new(big.Rat).SetString(b)
		if got, want := compareDecimal(a, &da, b, &db), ra.Cmp(rb); got != want {
			t.Fatalf("compare(%s, %s) = %d, big.Rat says %d", a, b, got, want)
		}
	}
}

func randomNumber(r *rand.Rand) string {
	s := strconv.Itoa(r.Intn(2000))
	if r.Intn(2) == 0 {
		s = "-" + s
	}
	if r.Intn(2) == 0 {
		s += "." + strconv.Itoa(r.Intn(1000))
	}
	if r.Intn(3) == 0 {
		s += "e" + strconv.Itoa(r.Intn(7)-3)
	}
	return s
}
