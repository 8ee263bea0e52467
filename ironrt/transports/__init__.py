"""How a governed call reaches its provider: over HTTP, from the offline provider, or (in
library mode) through the SDK's own client; all behind one interface, with one retry loop
over any of them."""
