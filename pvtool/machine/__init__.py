"""The emulated x86 machine on Unicorn (all modes). It knows nothing of hypercalls."""
