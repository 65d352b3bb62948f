#include "engine/observer.h"

#include <string>

#include "base/error.h"

namespace fp4kit::engine {

void LinearObserver::on_linear_amax(const LinearAmax& input) {
  throw Error("the observer of '" + std::string(input.name) +
              "' needs the rows of every linear input, which a pass on the GPU reports only as their amax");
}

}  // namespace fp4kit::engine
