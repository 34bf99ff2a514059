package qkdsim

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"math/bits"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/qrelay/qrelay/ringstore"
)

// This file holds the making of blocks: the keystream both ends derive
// from the seed (see "Blocks" in the package doc), split across CPUs for
// large batches.

// blocks makes n consecutive blocks from index first in one allocation.
func (s *Sim) blocks(blk cipher.Block, first uint64, n int, at func(j int) time.Time) []ringstore.Block {
	size := s.cfg.BlockSize
	buf := make([]byte, n*size)
	out := make([]ringstore.Block, n)
	s.generate(blk, first, buf)
	// The IDs share one string: one allocation instead of n.
	idBuf := make([]byte, 0, n*(len(s.prefix)+20))
	ends := make([]int, n)
	for j := range out {
		idBuf = append(idBuf, s.prefix...)
		idBuf = strconv.AppendUint(idBuf, first+uint64(j), 10)
		ends[j] = len(idBuf)
	}
	all := string(idBuf)
	for j := range out {
		lo := 0
		if j > 0 {
			lo = ends[j-1]
		}
		out[j] = ringstore.Block{ID: all[lo:ends[j]], Source: s.source, Time: at(j), Data: buf[j*size : (j+1)*size : (j+1)*size]}
	}
	return out
}

// generate fills dst (zeroed, a whole number of blocks) with the blocks
// from index first on: one CTR keystream, whose counter block for block i
// starts at i × BlockSize/16, so consecutive blocks are one stream and
// cost one call. Large batches are split across the CPUs. blk is s.aes,
// read under s.mu by the caller: Close may drop s.aes meanwhile.
func (s *Sim) generate(blk cipher.Block, first uint64, dst []byte) {
	size := s.cfg.BlockSize
	n := len(dst) / size
	parts := min(runtime.GOMAXPROCS(0), len(dst)/parallelMin)
	if parts <= 1 {
		ctr(blk, s.cfg.BlockSize, first, dst)
		return
	}
	per := (n + parts - 1) / parts
	var wg sync.WaitGroup
	for k := 0; k < n; k += per {
		end := min(k+per, n)
		wg.Go(func() { ctr(blk, size, first+uint64(k), dst[k*size:end*size]) })
	}
	wg.Wait()
}

// parallelMin is the least work worth a goroutine of generate.
const parallelMin = 256 << 10

func ctr(blk cipher.Block, blockSize int, first uint64, dst []byte) {
	var iv [aes.BlockSize]byte
	hi, lo := bits.Mul64(first, uint64(blockSize/aes.BlockSize))
	binary.BigEndian.PutUint64(iv[:8], hi)
	binary.BigEndian.PutUint64(iv[8:], lo)
	cipher.NewCTR(blk, iv[:]).XORKeyStream(dst, dst)
}
