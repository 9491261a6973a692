package bench

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Chart geometry, pixels.
const (
	chartWidth  = 960
	labelWidth  = 190
	barMaxWidth = 480
	rowHeight   = 22
	barHeight   = 14
	titleHeight = 26
	groupGap    = 14
)

var (
	colorBackground = color.RGBA{255, 255, 255, 255}
	colorText       = color.RGBA{30, 30, 30, 255}
	colorDirect     = color.RGBA{120, 120, 120, 255}
	colorGateway    = color.RGBA{40, 110, 190, 255}
	colorTarget     = color.RGBA{200, 60, 40, 255}
)

// throughputChart draws records/s of every throughput row as horizontal
// bars, one group per value size, scaled to the group's direct reader, with
// the 50% and 80% targets as red marks.
func throughputChart(res Results) ([]byte, error) {
	groups := groupBySize(res.Throughput)
	height := titleHeight * 2
	for _, g := range groups {
		height += titleHeight + rowHeight*len(g) + groupGap
	}
	img := image.NewRGBA(image.Rect(0, 0, chartWidth, height))
	draw.Draw(img, img.Bounds(), image.NewUniform(colorBackground), image.Point{}, draw.Src)
	y := titleHeight
	text(img, 10, y-8, "Records/s on loopback: direct franz-go vs. the gateway (red marks: 50% and 80% of direct)")
	text(img, 10, y+10, res.Machine.String())
	y += titleHeight
	for _, g := range groups {
		y += titleHeight
		text(img, 10, y-8, fmt.Sprintf("%s values, %d records", sizeName(g[0].ValueBytes), g[0].Records))
		scale := scaleOf(g)
		for _, r := range g {
			label, fill := "direct franz-go", colorDirect
			if r.Reader != "direct" {
				label, fill = fmt.Sprintf("gateway, %d session%s", r.Sessions, plural(r.Sessions)), colorGateway
			}
			text(img, 10, y+barHeight-3, label)
			w := int(r.RecordsPerS / scale * barMaxWidth)
			draw.Draw(img, image.Rect(labelWidth, y, labelWidth+max(w, 1), y+barHeight), image.NewUniform(fill), image.Point{}, draw.Src)
			text(img, labelWidth+w+6, y+barHeight-3, fmt.Sprintf("%.0f rec/s, %.0f MB/s (%.0f%%)", r.RecordsPerS, r.MBPerS, 100*r.OfDirect))
			y += rowHeight
		}
		direct := g[0].RecordsPerS / g[0].OfDirect // every row knows the direct rate
		for _, target := range []float64{0.5, 0.8} {
			x := labelWidth + int(direct*target/scale*barMaxWidth)
			draw.Draw(img, image.Rect(x, y-rowHeight*len(g)-2, x+2, y-rowHeight+barHeight+2), image.NewUniform(colorTarget), image.Point{}, draw.Src)
		}
		y += groupGap
	}
	var out bytes.Buffer
	if err := png.Encode(&out, img); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// groupBySize splits rows into runs of one value size, in order.
func groupBySize(rows []ThroughputRow) [][]ThroughputRow {
	var groups [][]ThroughputRow
	for i, r := range rows {
		if i == 0 || r.ValueBytes != rows[i-1].ValueBytes {
			groups = append(groups, nil)
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], r)
	}
	return groups
}

// scaleOf returns the records/s that a full-length bar stands for: the
// fastest row of the group.
func scaleOf(g []ThroughputRow) float64 {
	var top float64
	for _, r := range g {
		top = max(top, r.RecordsPerS)
	}
	return top
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func text(img draw.Image, x, y int, s string) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(colorText), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}
