module github.com/codi2/codi2

go 1.26.8
