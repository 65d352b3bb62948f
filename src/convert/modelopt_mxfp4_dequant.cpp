#include "convert/modelopt_mxfp4_dequant.h"

#include "formats/bf16.h"
#include "formats/e2m1.h"
#include "formats/e8m0.h"
#include "formats/mxfp4.h"

namespace fp4kit {

void modelopt_mxfp4_dequantize_bf16(const uint8_t* packed, const uint8_t* scales, size_t n, uint16_t* out) {
  for (size_t g = 0; g < n / kMxfp4BlockSize; ++g) {
    const float s = E8M0{scales[g]}.to_float();
    uint16_t lut[16];
    for (unsigned code = 0; code < 16; ++code) lut[code] = BF16::from_float(E2M1::kSignedZeroValues[code] * s).bits;
    for (size_t j = 0; j < kMxfp4BlockSize; ++j) {
      const size_t i = g * kMxfp4BlockSize + j;
      out[i] = lut[unpack_e2m1(packed[i / 2], static_cast<unsigned>(i)).bits];
    }
  }
}

}  // namespace fp4kit
