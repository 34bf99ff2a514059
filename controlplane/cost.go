package controlplane

import (
	"fmt"
	"math"
	"strconv"
)

// Cost constants. A link's cost is BaseCost plus a penalty that grows as
// its pad stock falls:
//
//	stock/ref   [0,2)  [2,4)  [4,8)  [8,16)  [16,32)  [32,64)  ≥64
//	cost          50     30     20     15       12       11     10
//
// where stock is the smaller of the link's two directions (a relay spends
// pad one way, its completion the other, so the scarcer side limits the
// link) and ref is max(MinStock, CostRef). This is the hyperbolic
// cost = BaseCost + MaxStockPenalty·ref/stock, quantised at powers of two:
// monotone (less stock never costs less), integer (so ties are exact and
// every node breaks them the same way), and coarse, so that the cost, and
// hence the advert, changes only when the stock doubles or halves. A nearly
// exhausted link (50) loses to a detour of up to four healthy hops (40),
// which steers traffic away before the stock falls below MinStock and the
// link is excluded outright.
const (
	BaseCost        = 10
	MaxStockPenalty = 40
	// StockBuckets is the number of doublings of ref after which the
	// stock adds no penalty.
	StockBuckets = 6
	// CostRef is the reference stock of links with a smaller MinStock.
	CostRef = 1 << 20
	// StandbyPenalty is added to the cost of a link whose either end is in
	// standby. It exceeds the cost of any path of healthy links (at most
	// MaxLinkCost × a few hundred hops), so SPF takes a standby link only
	// when no path exists without one.
	StandbyPenalty = 1 << 28
	// MaxLinkCost is the largest cost an advert may carry.
	MaxLinkCost = 1<<16 - 1
	// DefaultMaxQBER is the QBER above which a link is excluded when its
	// LocalLink.MaxQBER is 0.
	DefaultMaxQBER = 0.11
)

// Hysteresis. A link excluded for low stock comes back only when its stock
// reaches MinStock + MinStock/hystDiv; one excluded for QBER comes back
// when QBER falls to MaxQBER·qberReadmit. A cost bucket is left only when
// the stock moves 1/hystDiv beyond the bucket's bounds. So a stock or QBER
// hovering around a boundary does not make the link flap, and the
// advert is not re-originated for every wobble.
const (
	hystDiv     = 8
	qberReadmit = 0.9
)

// ReadmitStock is the pad stock at which a link excluded for low stock
// (below minStock) is admitted again. Work that may wait, such as filling
// key pools in the background, should leave a link at least this much, or
// it keeps the link out of every route.
func ReadmitStock(minStock uint64) uint64 { return satAdd(minStock, minStock/hystDiv) }

// linkEval is the router's verdict on one local link.
type linkEval struct {
	usable   bool
	cost     uint32 // 0 unless usable
	bucket   int    // stock bucket, kept with hysteresis
	stockLow bool   // excluded for stock, kept with hysteresis
	qberHigh bool   // excluded for QBER, kept with hysteresis
	reason   string // why not usable; "" if usable
}

// evaluate judges l. prev is the previous verdict on the same link, or nil
// for a new link; its hysteresis state carries over.
func evaluate(l *LocalLink, prev *linkEval) linkEval {
	stock := min(l.TxStock, l.RxStock)
	ref := max(l.MinStock, CostRef)
	maxQ := l.maxQBER()
	var e linkEval

	readmitStock := ReadmitStock(l.MinStock)
	if prev != nil && prev.stockLow {
		e.stockLow = stock < readmitStock
	} else {
		e.stockLow = stock < l.MinStock
	}
	qber := l.QBER
	if prev != nil && prev.qberHigh {
		e.qberHigh = !(qber <= maxQ*qberReadmit) // NaN stays excluded
	} else {
		e.qberHigh = !(qber <= maxQ)
	}

	e.bucket = stockBucket(stock, ref)
	if prev != nil && prev.bucket != e.bucket {
		lo, hi := bucketBounds(prev.bucket, ref)
		if stock >= lo-lo/hystDiv && (hi == math.MaxUint64 || stock < satAdd(hi, hi/hystDiv)) {
			e.bucket = prev.bucket
		}
	}

	switch {
	case l.State == OutOfService:
		e.reason = "out of service"
	case !l.Up:
		e.reason = "link down"
	case !l.QKDUp:
		why := l.QKDFault
		if why == "" {
			why = "no keys delivered"
		}
		e.reason = "QKD module fault: " + why
	case e.qberHigh && !(qber <= maxQ):
		e.reason = "QBER " + fmtFloat(qber) + " above " + fmtFloat(maxQ)
	case e.qberHigh:
		e.reason = "QBER " + fmtFloat(qber) + " above re-admission level " + fmtFloat(maxQ*qberReadmit) + " (threshold " + fmtFloat(maxQ) + ")"
	case e.stockLow && stock < l.MinStock:
		e.reason = "pad stock " + fmtBytes(stock) + " below threshold " + fmtBytes(l.MinStock)
	case e.stockLow:
		e.reason = "pad stock " + fmtBytes(stock) + " below re-admission level " + fmtBytes(readmitStock) + " (threshold " + fmtBytes(l.MinStock) + ")"
	case l.State == Reserved:
		e.reason = "reserved for static routes"
	case !l.State.Valid():
		e.reason = fmt.Sprintf("unknown component state %d", uint8(l.State))
	default:
		e.usable = true
		e.cost = bucketCost(e.bucket)
	}
	return e
}

func (l *LocalLink) maxQBER() float64 {
	if l.MaxQBER > 0 {
		return l.MaxQBER
	}
	return DefaultMaxQBER
}

// stockBucket returns the largest b <= StockBuckets with stock >= ref<<b,
// or 0.
func stockBucket(stock, ref uint64) int {
	b := 0
	for b < StockBuckets && stock >= satShl(ref, b+1) {
		b++
	}
	return b
}

// bucketBounds returns the stock range [lo, hi) of bucket b; hi is
// MaxUint64 for the last bucket.
func bucketBounds(b int, ref uint64) (lo, hi uint64) {
	if b > 0 {
		lo = satShl(ref, b)
	}
	hi = math.MaxUint64
	if b < StockBuckets {
		hi = satShl(ref, b+1)
	}
	return lo, hi
}

// bucketCost is the cost of a link in stock bucket b: monotone
// non-increasing in b.
func bucketCost(b int) uint32 { return BaseCost + MaxStockPenalty>>b }

func satShl(v uint64, n int) uint64 {
	if v > math.MaxUint64>>n {
		return math.MaxUint64
	}
	return v << n
}

func satAdd(a, b uint64) uint64 {
	if a > math.MaxUint64-b {
		return math.MaxUint64
	}
	return a + b
}

// fmtBytes formats n as "512 B", "1.2 KiB", "1 MiB".
func fmtBytes(n uint64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return strconv.FormatUint(n, 10) + " B"
	}
	v, i := float64(n)/1024, 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64) + " " + units[i:i+1] + "iB"
}

func fmtFloat(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }

// sanitiseRate makes a reported rate fit the wire format: finite and >= 0.
func sanitiseRate(v float64) float64 {
	switch {
	case !(v > 0): // NaN, negative, -0
		return 0
	case v > math.MaxFloat64:
		return math.MaxFloat64
	}
	return v
}

// sanitiseQBER clamps a reported QBER to 0..1; NaN becomes 1.
func sanitiseQBER(v float64) float64 {
	switch {
	case v != v || v > 1:
		return 1
	case !(v > 0):
		return 0
	}
	return v
}
