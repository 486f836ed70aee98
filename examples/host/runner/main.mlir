// The input of examples/host/check_runner_output.py: @main builds
// deterministic inputs for @split_decode (examples/host/split_decode.mlir),
// runs it through @run (on_gpu.mlir: device buffers, copies, the call) and
// prints the output and log-sum-exps with the runner utils' printMemrefF32.
//
// 6 sequences of 37, 1, 100, 0, 128 and 48 tokens (partial last pages, an
// empty sequence, exact page ends) in tables of 8 pages, split after page 3
// (48 tokens: the first two sequences and the last have no suffix), over a
// pool of 53 pages handed out in a shuffled order: block_table[b, j] =
// (8 b + j) * 17 mod 53. Values are small multiples of 1/8, 1/16 or 1/32,
// exact in bf16, from integer formulas the checker repeats:
//   q[b, h, d]    = ((131 b + 31 h + 7 d) mod 61 - 30) / 8
//   k[p, s, g, d] = ((97 p + 53 s + 29 g + 11 d) mod 59 - 29) / 32
//   v[p, s, g, d] = ((89 p + 43 s + 23 g + 13 d) mod 53 - 26) / 16
//   sinks[h]      = ((h mod 5) - 2) * 0.75
memref.global "private" constant @seq_lens : memref<6xi32> =
    dense<[37, 1, 100, 0, 128, 48]>

func.func private @printMemrefF32(memref<*xf32>)

/// ((a * x + b * y + c * z + e * w) mod m - off) * scale as bf16.
func.func private @formula(%x: index, %y: index, %z: index, %w: index,
                           %a: index, %b: index, %c: index, %e: index,
                           %m: index, %off: index, %scale: f32) -> bf16 {
  %ax = arith.muli %a, %x : index
  %by = arith.muli %b, %y : index
  %cz = arith.muli %c, %z : index
  %ew = arith.muli %e, %w : index
  %s0 = arith.addi %ax, %by : index
  %s1 = arith.addi %s0, %cz : index
  %s2 = arith.addi %s1, %ew : index
  %r = arith.remui %s2, %m : index
  %t = arith.subi %r, %off : index
  %i = arith.index_cast %t : index to i64
  %f = arith.sitofp %i : i64 to f32
  %v = arith.mulf %f, %scale : f32
  %h = arith.truncf %v : f32 to bf16
  return %h : bf16
}

func.func @main() {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %c16 = arith.constant 16 : index
  %c64 = arith.constant 64 : index
  %batch = arith.constant 6 : index
  %max_pages = arith.constant 8 : index
  %pool = arith.constant 53 : index
  %split = arith.constant 3 : index
  %split_tokens = arith.constant 48 : i32
  %inv32 = arith.constant 0.03125 : f32
  %inv16 = arith.constant 0.0625 : f32
  %inv8 = arith.constant 0.125 : f32

  %q = memref.alloc(%batch) : memref<?x16x64xbf16>
  %k = memref.alloc(%pool) : memref<?x16x4x64xbf16>
  %v = memref.alloc(%pool) : memref<?x16x4x64xbf16>
  %bt = memref.alloc(%batch, %max_pages) : memref<?x?xi32>
  %prefix_lens = memref.alloc(%batch) : memref<?xi32>
  %suffix_lens = memref.alloc(%batch) : memref<?xi32>
  %sinks = memref.alloc() : memref<16xf32>
  %out = memref.alloc(%batch) : memref<?x16x64xbf16>
  %lse = memref.alloc(%batch) : memref<?x16xf32>

  scf.for %b = %c0 to %batch step %c1 {
    scf.for %h = %c0 to %c16 step %c1 {
      scf.for %d = %c0 to %c64 step %c1 {
        %m = arith.constant 61 : index
        %off = arith.constant 30 : index
        %ca = arith.constant 131 : index
        %cb = arith.constant 31 : index
        %cc = arith.constant 7 : index
        %x = func.call @formula(%b, %h, %d, %c0, %ca, %cb, %cc, %c0, %m, %off, %inv8)
            : (index, index, index, index, index, index, index, index, index, index, f32) -> bf16
        memref.store %x, %q[%b, %h, %d] : memref<?x16x64xbf16>
      }
    }
  }
  scf.for %p = %c0 to %pool step %c1 {
    scf.for %s = %c0 to %c16 step %c1 {
      scf.for %g = %c0 to %c4 step %c1 {
        scf.for %d = %c0 to %c64 step %c1 {
          %km = arith.constant 59 : index
          %koff = arith.constant 29 : index
          %k1 = arith.constant 97 : index
          %k2 = arith.constant 53 : index
          %k3 = arith.constant 29 : index
          %k4 = arith.constant 11 : index
          %kx = func.call @formula(%p, %s, %g, %d, %k1, %k2, %k3, %k4, %km, %koff, %inv32)
              : (index, index, index, index, index, index, index, index, index, index, f32) -> bf16
          memref.store %kx, %k[%p, %s, %g, %d] : memref<?x16x4x64xbf16>
          %vm = arith.constant 53 : index
          %voff = arith.constant 26 : index
          %v1 = arith.constant 89 : index
          %v2 = arith.constant 43 : index
          %v3 = arith.constant 23 : index
          %v4 = arith.constant 13 : index
          %vx = func.call @formula(%p, %s, %g, %d, %v1, %v2, %v3, %v4, %vm, %voff, %inv16)
              : (index, index, index, index, index, index, index, index, index, index, f32) -> bf16
          memref.store %vx, %v[%p, %s, %g, %d] : memref<?x16x4x64xbf16>
        }
      }
    }
  }
  %lens = memref.get_global @seq_lens : memref<6xi32>
  %c17 = arith.constant 17 : index
  scf.for %b = %c0 to %batch step %c1 {
    scf.for %j = %c0 to %max_pages step %c1 {
      %row = arith.muli %b, %max_pages : index
      %slot = arith.addi %row, %j : index
      %mixed = arith.muli %slot, %c17 : index
      %page = arith.remui %mixed, %pool : index
      %page_i32 = arith.index_cast %page : index to i32
      memref.store %page_i32, %bt[%b, %j] : memref<?x?xi32>
    }
    %n = memref.load %lens[%b] : memref<6xi32>
    %prefix = arith.minsi %n, %split_tokens : i32
    %suffix = arith.subi %n, %prefix : i32
    memref.store %prefix, %prefix_lens[%b] : memref<?xi32>
    memref.store %suffix, %suffix_lens[%b] : memref<?xi32>
  }
  scf.for %h = %c0 to %c16 step %c1 {
    %c5 = arith.constant 5 : index
    %c2 = arith.constant 2 : i64
    %r = arith.remui %h, %c5 : index
    %ri = arith.index_cast %r : index to i64
    %t = arith.subi %ri, %c2 : i64
    %f = arith.sitofp %t : i64 to f32
    %w = arith.constant 0.75 : f32
    %sink = arith.mulf %f, %w : f32
    memref.store %sink, %sinks[%h] : memref<16xf32>
  }

  func.call @run(%q, %k, %v, %bt, %split, %prefix_lens, %suffix_lens, %sinks, %out, %lse)
      : (memref<?x16x64xbf16>, memref<?x16x4x64xbf16>, memref<?x16x4x64xbf16>,
         memref<?x?xi32>, index, memref<?xi32>, memref<?xi32>, memref<16xf32>,
         memref<?x16x64xbf16>, memref<?x16xf32>) -> ()

  // The output widened to f32 for printing.
  %out32 = memref.alloc(%batch) : memref<?x16x64xf32>
  scf.for %b = %c0 to %batch step %c1 {
    scf.for %h = %c0 to %c16 step %c1 {
      scf.for %d = %c0 to %c64 step %c1 {
        %x = memref.load %out[%b, %h, %d] : memref<?x16x64xbf16>
        %y = arith.extf %x : bf16 to f32
        memref.store %y, %out32[%b, %h, %d] : memref<?x16x64xf32>
      }
    }
  }
  %out_u = memref.cast %out32 : memref<?x16x64xf32> to memref<*xf32>
  %lse_u = memref.cast %lse : memref<?x16xf32> to memref<*xf32>
  call @printMemrefF32(%out_u) : (memref<*xf32>) -> ()
  call @printMemrefF32(%lse_u) : (memref<*xf32>) -> ()

  memref.dealloc %out32 : memref<?x16x64xf32>
  memref.dealloc %q : memref<?x16x64xbf16>
  memref.dealloc %k : memref<?x16x4x64xbf16>
  memref.dealloc %v : memref<?x16x4x64xbf16>
  memref.dealloc %bt : memref<?x?xi32>
  memref.dealloc %prefix_lens : memref<?xi32>
  memref.dealloc %suffix_lens : memref<?xi32>
  memref.dealloc %sinks : memref<16xf32>
  memref.dealloc %out : memref<?x16x64xbf16>
  memref.dealloc %lse : memref<?x16xf32>
  return
}
