"""Container tests: build the service images and run the e2e scenarios against them."""
