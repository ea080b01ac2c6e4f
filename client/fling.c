#include "fling.h"
