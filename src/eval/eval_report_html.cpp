#include "eval/eval_report_html.h"

#include <string_view>

#include "base/json_in_html.h"

namespace fp4kit::eval {

namespace {

constexpr std::string_view kHead = R"HTML(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fp4kit eval</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{padding:18px 28px;color:#fff;background:#5b6475}
header.PASS{background:#1f7a44} header.WARN{background:#9a6700} header.FAIL{background:#b3261e}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;opacity:.9}
main{padding:8px 28px 40px;max-width:1200px}
section{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:14px 18px;margin:16px 0}
h2{font-size:16px;margin:0 0 10px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eceff3}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:16px}
svg{width:100%;height:auto;background:#fff}
svg text{font:11px system-ui,sans-serif;fill:#3b4252}
.muted{color:#6b7385}
</style></head>
<body>
<header id="verdict"><h1>fp4kit eval</h1><p>This report needs JavaScript to render its numbers.</p></header>
<main>
<section><h2>Statistics over the scored positions</h2><div id="stats"></div></section>
<div class="plots">
<section><h2>KLD histogram (positions per bin)</h2><div id="plot-hist"></div></section>
<section><h2>KLD along the sequence with the worst position</h2><div id="plot-sequence"></div></section>
<section><h2>Per-layer attribution: mean KLD with only that layer, or one kind of its weights, quantized</h2><div id="plot-layers"></div></section>
<section><h2>Top-1 agreement with only that layer quantized</h2><div id="plot-top1"></div></section>
</div>
<section><h2>Per-layer attribution</h2><div id="layers"></div></section>
</main>
<script type="application/json" id="report-data">)HTML";

constexpr std::string_view kTail = R"HTML(</script>
<script>
(function(){
const R=JSON.parse(document.getElementById('report-data').textContent);
const S=R.statistics;
const NS='http://www.w3.org/2000/svg';
function el(tag,attrs,text){const e=document.createElement(tag);for(const k in attrs||{})e.setAttribute(k,attrs[k]);if(text!==undefined)e.textContent=text;return e;}
function sv(tag,attrs,text){const e=document.createElementNS(NS,tag);for(const k in attrs||{})e.setAttribute(k,attrs[k]);if(text!==undefined)e.textContent=text;return e;}
function num(v){return v===null?'\u2014':Number(v).toPrecision(6);}
function numCell(tr,field,value){tr.appendChild(el('td',{'class':'num','data-field':field,'data-value':String(value)},num(value)));}

const h=document.getElementById('verdict');h.className=R.verdict;h.innerHTML='';
h.appendChild(el('h1',{id:'verdict-line'},R.verdict+(R.reasons.length?' \u2014 '+R.reasons.join('; '):' \u2014 mean KLD '+num(S.kld.mean)+', top-1 '+num(100*S.top1.value)+'%')));
h.appendChild(el('p',{},R.quantized+' against '+R.base+': '+R.samples+' sequences x '+R.seq_len+' tokens from '+R.data+', '+S.positions+' scored positions'));

// Statistics: one row per number, field = its path in the JSON report.
const rows=[['ppl_q.value','PPL(Q)'],['ppl_q.error','PPL(Q) error'],['ppl_base.value','PPL(base)'],['ppl_base.error','PPL(base) error'],
 ['cor_ln_ppl','Cor(ln PPL(Q), ln PPL(base))'],['ln_ppl_ratio.value','Mean ln(PPL(Q)/PPL(base))'],['ln_ppl_ratio.error','  error'],
 ['ppl_ratio.value','PPL(Q)/PPL(base)'],['ppl_ratio.error','  error'],['ppl_diff.value','PPL(Q)-PPL(base)'],['ppl_diff.error','  error'],
 ['kld.mean','Mean KLD'],['kld.error','  error'],['kld.max','Maximum KLD'],['kld.median','Median KLD'],['kld.min','Minimum KLD'],
 ['p_diff.mean','Mean \u0394p'],['p_diff.error','  error'],['p_diff.max','Maximum \u0394p'],['p_diff.median','Median \u0394p'],['p_diff.min','Minimum \u0394p'],
 ['p_diff.rms.value','RMS \u0394p'],['p_diff.rms.error','  error'],['top1.value','Same top-1'],['top1.error','  error']];
S.kld.percentiles.forEach(function(p,i){rows.push(['kld.percentiles.'+i+'.value',(100*p.fraction).toFixed(1)+'% KLD']);});
S.p_diff.percentiles.forEach(function(p,i){rows.push(['p_diff.percentiles.'+i+'.value',(100*p.fraction).toFixed(1)+'% \u0394p']);});
function at(path){return path.split('.').reduce(function(o,k){return o[k];},S);}
const st=el('table');
rows.forEach(function(r){const tr=el('tr');tr.appendChild(el('td',{},r[1]));numCell(tr,r[0],at(r[0]));st.appendChild(tr);});
document.getElementById('stats').appendChild(st);

// Bars over categories; opts.extra: more series [{name, color, values}] drawn beside each bar.
function chart(target,values,yLabel,opts){
  opts=opts||{};
  const W=560,H=260,L=58,B=40,Tp=12,Rt=10;
  const svg=sv('svg',{viewBox:'0 0 '+W+' '+H,role:'img'});
  if(!values.length){target.appendChild(el('p',{'class':'muted'},opts.empty||'Nothing to plot.'));return;}
  const series=[{name:opts.name||'',color:opts.color||'#3b6fb6',values:values}].concat(opts.extra||[]);
  let hi=opts.top||0;series.forEach(function(s){s.values.forEach(function(v){if(v>hi)hi=v;});});if(!(hi>0))hi=1;
  const x=function(i){return L+(W-L-Rt)*(i+0.5)/values.length;};
  const y=function(v){return Tp+(H-Tp-B)*(1-v/hi);};
  for(let k=0;k<=4;k++){const v=hi*k/4;svg.appendChild(sv('line',{x1:L,x2:W-Rt,y1:y(v),y2:y(v),stroke:'#e5e8ee'}));
    svg.appendChild(sv('text',{x:L-6,y:y(v)+4,'text-anchor':'end'},v.toPrecision(3)));}
  svg.appendChild(sv('text',{x:12,y:Tp+(H-Tp-B)/2,transform:'rotate(-90 12 '+(Tp+(H-Tp-B)/2)+')','text-anchor':'middle'},yLabel));
  const gw=Math.max(1,(W-L-Rt)/values.length*0.8),bw=gw/series.length;
  series.forEach(function(s,si){s.values.forEach(function(v,i){const x0=x(i)-gw/2+si*bw;
    const r=sv('rect',{x:x0,y:y(v),width:Math.max(0.5,bw-(series.length>1?1:0)),height:Math.max(0,y(0)-y(v)),fill:s.color});
    r.appendChild(sv('title',{},(opts.labels?opts.labels[i]:String(i))+(s.name?' '+s.name:'')+': '+v));svg.appendChild(r);});});
  const step=Math.max(1,Math.ceil(values.length/12));
  values.forEach(function(v,i){if(i%step)return;svg.appendChild(sv('text',{x:x(i),y:H-B+14,'text-anchor':'middle'},opts.labels?opts.labels[i]:String(i)));});
  if(opts.xLabel)svg.appendChild(sv('text',{x:(W+L)/2,y:H-4,'text-anchor':'middle'},opts.xLabel));
  if(series.length>1){let lx=L+8;series.forEach(function(s){svg.appendChild(sv('rect',{x:lx,y:H-12,width:10,height:10,fill:s.color}));
    svg.appendChild(sv('text',{x:lx+14,y:H-3},s.name));lx+=s.name.length*6.2+30;});}
  target.appendChild(svg);
}

const P=R.positions;
const bins=30,kmax=S.kld.max>0?S.kld.max:1,counts=new Array(bins).fill(0);
P.kld.forEach(function(k){counts[Math.min(bins-1,Math.floor(k/kmax*bins))]++;});
chart(document.getElementById('plot-hist'),counts,'positions',{labels:counts.map(function(c,i){return (kmax*i/bins).toPrecision(2);}),xLabel:'KLD (nats), bin start'});
const ws=R.worst_position?R.worst_position.sequence:0;const along=[],alongLabels=[];
P.kld.forEach(function(k,i){if(P.sequence[i]===ws){along.push(k);alongLabels.push(String(P.position[i]));}});
chart(document.getElementById('plot-sequence'),along,'KLD (nats)',{labels:alongLabels,xLabel:'position in sequence '+ws,color:'#b3261e'});
const A=R.attribution,layerLabels=A.map(function(a){return 'L'+a.layer;});
const scored=!A.length||A[0].logits_scored;
const none='No attribution (the base logits came from a file, or --no-attribution).';
const kindColors=['#3b6fb6','#7a4fb3','#2f8f83'];
if(!scored)document.getElementById('plot-layers').previousElementSibling.textContent='Per-layer attribution: residual relative error each quantized layer adds to the base stream';
chart(document.getElementById('plot-layers'),A.map(function(a){return scored?a.kld_mean:a.residual_rel_error;}),scored?'mean KLD (nats)':'residual relative error',{labels:layerLabels,empty:none,color:'#9a6700',name:'whole layer',
  extra:(A.length?A[0].kinds:[]).map(function(k,ki){return {name:k.kind,color:kindColors[ki%3],values:A.map(function(a){return a.kinds[ki].kld_mean;})};})});
chart(document.getElementById('plot-top1'),scored?A.map(function(a){return 100*a.top1;}):[],'top-1 agreement (%)',{labels:layerLabels,empty:scored?none:'No per-layer top-1 (the attribution measured residual errors only).',top:100,color:'#1f7a44'});

const lt=document.getElementById('layers');
if(!A.length){lt.appendChild(el('p',{'class':'muted'},none));}
else{const t=el('table');const hr=el('tr');['layer / kind quantized alone','residual relative error','mean KLD','max KLD','top-1'].forEach(function(x){hr.appendChild(el('th',{},x));});t.appendChild(hr);
 function row(label,b,attrs){const tr=el('tr',attrs);tr.appendChild(el('td',{},label));
  numCell(tr,'residual_rel_error',b.residual_rel_error);numCell(tr,'kld_mean',b.kld_mean);numCell(tr,'kld_max',b.kld_max);numCell(tr,'top1',b.top1);t.appendChild(tr);}
 A.forEach(function(a){row('L'+a.layer+(a.layer===R.worst_layer?' (worst)':''),a,{'class':'layer','data-layer':String(a.layer)});
  a.kinds.forEach(function(k){row('\u2003'+k.kind+(a.layer===R.worst_layer&&k.kind===R.worst_layer_kind?' (worst)':''),k,{'class':'kind','data-layer':String(a.layer),'data-kind':k.kind});});});
 lt.appendChild(t);}
document.body.setAttribute('data-rendered','yes');
})();
</script>
</body></html>
)HTML";

}  // namespace

std::string eval_report_to_html(const nlohmann::json& report) {
  const std::string data = json_for_html_script(report);
  std::string page;
  page.reserve(kHead.size() + data.size() + kTail.size());
  page.append(kHead).append(data).append(kTail);
  return page;
}

}  // namespace fp4kit::eval
