package policy

// Exact decimal comparison over JSON number text. Amounts in params are
// money: comparing them through float64 would let 100.00000000000001 pass a
// `lte: 100` rule, so the digits themselves are compared.

// text is a number's source: compiled bundles hold strings, params hold bytes.
type text interface{ ~string | ~[]byte }

// maxExponent bounds exponents so a hostile "1e999999999999" is an error,
// not an overflow.
const maxExponent = 1 << 20

// decimal locates a number inside its text without copying it: the value is
// 0.d1d2…dn × 10^point, where d are the significant digits.
type decimal struct {
	neg    bool
	zero   bool
	intLo  int // integer digits are text[intLo:intHi]
	intHi  int
	fracLo int // fraction digits are text[fracLo:fracHi]
	fracHi int
	first  int // index of the first significant digit in int+frac digits
	n      int // number of significant digits, trailing zeros dropped
	point  int
}

// parseDecimal validates the JSON number grammar and locates the digits.
func parseDecimal[T text](s T) (decimal, bool) {
	var d decimal
	i := 0
	if i < len(s) && s[i] == '-' {
		d.neg = true
		i++
	}
	d.intLo = i
	i = scanDigits(s, i)
	d.intHi = i
	if d.intHi == d.intLo || (s[d.intLo] == '0' && d.intHi-d.intLo > 1) {
		return d, false
	}
	d.fracLo, d.fracHi = i, i
	if i < len(s) && s[i] == '.' {
		d.fracLo = i + 1
		i = scanDigits(s, i+1)
		d.fracHi = i
		if d.fracHi == d.fracLo {
			return d, false
		}
	}
	exp, i, ok := parseExponent(s, i)
	if !ok || i != len(s) {
		return d, false
	}
	locate(s, &d, exp)
	return d, true
}

func scanDigits[T text](s T, i int) int {
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

func parseExponent[T text](s T, i int) (exp, next int, ok bool) {
	if i >= len(s) || (s[i] != 'e' && s[i] != 'E') {
		return 0, i, true
	}
	i++
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	start := i
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		exp = exp*10 + int(s[i]-'0')
		if exp > maxExponent {
			return 0, i, false
		}
	}
	if neg {
		exp = -exp
	}
	return exp, i, i > start
}

// locate finds the significant digits and the decimal point position.
func locate[T text](s T, d *decimal, exp int) {
	total := d.digits()
	d.first = 0
	for d.first < total && digitAt(s, d, d.first) == '0' {
		d.first++
	}
	if d.first == total {
		d.zero = true
		return
	}
	last := total - 1
	for digitAt(s, d, last) == '0' {
		last--
	}
	d.n = last - d.first + 1
	d.point = d.intHi - d.intLo - d.first + exp
}

func (d *decimal) digits() int { return d.intHi - d.intLo + d.fracHi - d.fracLo }

func digitAt[T text](s T, d *decimal, k int) byte {
	if k < d.intHi-d.intLo {
		return s[d.intLo+k]
	}
	return s[d.fracLo+k-(d.intHi-d.intLo)]
}

func (d *decimal) sign() int {
	switch {
	case d.zero:
		return 0
	case d.neg:
		return -1
	}
	return 1
}

// compareDecimal returns -1, 0 or +1 as a is less than, equal to or greater
// than b.
func compareDecimal[A, B text](a A, da *decimal, b B, db *decimal) int {
	sa, sb := da.sign(), db.sign()
	if sa != sb || sa == 0 {
		return cmpInt(sa, sb)
	}
	return sa * compareMagnitude(a, da, b, db)
}

func compareMagnitude[A, B text](a A, da *decimal, b B, db *decimal) int {
	if da.point != db.point {
		return cmpInt(da.point, db.point)
	}
	for k := 0; k < da.n || k < db.n; k++ {
		x, y := sigDigit(a, da, k), sigDigit(b, db, k)
		if x != y {
			return cmpInt(int(x), int(y))
		}
	}
	return 0
}

// sigDigit returns the k-th significant digit, or '0' past the last one.
func sigDigit[T text](s T, d *decimal, k int) byte {
	if k >= d.n {
		return '0'
	}
	return digitAt(s, d, d.first+k)
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
