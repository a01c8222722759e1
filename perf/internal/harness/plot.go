package harness

import (
	"fmt"
	"image/color"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

var metricLabel = map[string]string{
	"mpps":          "Mpps (median)",
	"gbps":          "Gbit/s (median)",
	"rtt_p50_us":    "round trip p50, us (median)",
	"backend_cores": "back-end CPU, cores (median)",
}

// plot writes one bar chart per group (its primary figure, median with
// min-max whiskers) and returns the file names.
func (res *Results) plot(dir string) ([]string, error) {
	var files []string
	for _, g := range res.Groups {
		m := g.Primary()
		p := plot.New()
		p.Title.Text = fmt.Sprintf("%s (%s front-end)", g.Name, g.FE)
		p.Y.Label.Text = metricLabel[m]
		var vals plotter.Values
		var names []string
		var errs plotter.YErrors
		for _, s := range g.Subjects {
			sm := res.summary(g.Name, s.Name)
			v := sm.Median[m]
			vals = append(vals, v)
			names = append(names, s.Name)
			errs = append(errs, struct{ Low, High float64 }{v - sm.Min[m], sm.Max[m] - v})
		}
		bars, err := plotter.NewBarChart(vals, vg.Points(28))
		if err != nil {
			return nil, err
		}
		bars.Color = color.RGBA{R: 70, G: 110, B: 170, A: 255}
		p.Add(bars)
		pts := make(plotter.XYs, len(vals))
		for i, v := range vals {
			pts[i].X, pts[i].Y = float64(i), v
		}
		eb, err := plotter.NewYErrorBars(struct {
			plotter.XYs
			plotter.YErrors
		}{pts, errs})
		if err == nil {
			p.Add(eb)
		}
		p.NominalX(names...)
		p.Y.Min = 0
		name := g.Name + ".png"
		if err := p.Save(5*vg.Inch, 3*vg.Inch, filepath.Join(dir, name)); err != nil {
			return nil, err
		}
		files = append(files, name)
	}
	return files, nil
}
