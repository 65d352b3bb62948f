#include "verify/report_html.h"

#include <string_view>

#include "base/json_in_html.h"

namespace fp4kit::verify {

namespace {

// The page: static markup and a script that renders everything from the embedded report.
constexpr std::string_view kHead = R"HTML(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fp4kit verify</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{padding:18px 28px;color:#fff}
header.pass{background:#1f7a44} header.fail{background:#b3261e}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;opacity:.9}
main{padding:8px 28px 40px;max-width:1200px}
section{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:14px 18px;margin:16px 0}
h2{font-size:16px;margin:0 0 10px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eceff3;vertical-align:top}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.flagged td{background:#fdecea}
.sev-fail{color:#b3261e;font-weight:600} .sev-warn{color:#9a6700;font-weight:600}
.kv{display:grid;grid-template-columns:max-content auto;gap:2px 16px}
.kv span:nth-child(odd){color:#5b6475}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:16px}
svg{width:100%;height:auto;background:#fff}
svg text{font:11px system-ui,sans-serif;fill:#3b4252}
.muted{color:#6b7385}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace}
</style></head>
<body>
<header id="verdict"><h1>fp4kit verify</h1><p>This report needs JavaScript to render its numbers.</p></header>
<main>
<section><h2>Checkpoint</h2><div class="kv" id="overview"></div></section>
<section><h2>Findings</h2><div id="findings"></div></section>
<div class="plots">
<section><h2>SQNR per layer (dB, worst tensor and mean)</h2><div id="plot-layer"></div></section>
<section><h2>SQNR per tensor kind (dB, worst tensor)</h2><div id="plot-kind"></div></section>
<section><h2>Block scales (E4M3), all NVFP4 weights</h2><div id="plot-scales"></div></section>
<section><h2>Worst tensors (SQNR dB)</h2><div id="plot-worst"></div></section>
</div>
<section><h2>Worst tensors</h2><div id="worst"></div></section>
</main>
<script type="application/json" id="report-data">)HTML";

constexpr std::string_view kTail = R"HTML(</script>
<script>
(function(){
const R = JSON.parse(document.getElementById('report-data').textContent);
const NS = 'http://www.w3.org/2000/svg';
function el(tag, attrs, text){const e=document.createElement(tag);for(const k in attrs||{})e.setAttribute(k,attrs[k]);if(text!==undefined)e.textContent=text;return e;}
function sv(tag, attrs, text){const e=document.createElementNS(NS,tag);for(const k in attrs||{})e.setAttribute(k,attrs[k]);if(text!==undefined)e.textContent=text;return e;}
function db(v, exact){return v===null||v===undefined?(exact?'exact':'-'):v.toFixed(2);}
function sci(v){return v===null||v===undefined?'-':v.toExponential(3);}
function pct(v){return v===null||v===undefined?'-':(100*v).toFixed(3)+'%';}
function numCell(tr, field, value, text){const td=el('td',{'class':'num','data-field':field,'data-value':value===null||value===undefined?'':String(value)},text);tr.appendChild(td);return td;}

// Verdict and overview.
const v=document.getElementById('verdict');
v.className=R.passed?'pass':'fail';
v.innerHTML='';
v.appendChild(el('h1',{id:'verdict-line'},(R.passed?'PASS':'FAIL')+' \u2014 '+R.failures+' failed checks, '+R.warnings+' warnings'));
v.appendChild(el('p',{},R.checkpoint+(R.source?'  (source '+R.source+')':'')));
const ov=document.getElementById('overview');
const S=R.summary;
[['layout',R.layout+(R.producer?' ('+R.producer+')':'')],['shards',R.shards],['tensors',R.tensors],['NVFP4 weights',R.nvfp4_weights],
 ['checkpoint bytes',R.checkpoint_bytes],['tensors compared with the source',S.tensors_compared],['exactly reproduced tensors',S.tensors_exact],
 ['worst SQNR (dB)',db(S.worst_sqnr_db,S.tensors_compared>0&&S.worst_sqnr_db===null)],['NaN / Inf values',S.nan_values+' / '+S.inf_values],
 ['kept tensors bit-identical',R.source?R.kept_identical+' of '+R.kept:'-'],['seconds',R.seconds.toFixed(2)+' on '+R.threads+' threads']
].forEach(function(p){ov.appendChild(el('span',{},p[0]));ov.appendChild(el('span',{'data-key':p[0]},String(p[1])));});

// Findings.
const fd=document.getElementById('findings');
if(!R.findings.length){fd.appendChild(el('p',{'class':'muted'},'No findings: every check passed.'));}
else{const t=el('table');const h=el('tr');['severity','check','tensor','message'].forEach(function(x){h.appendChild(el('th',{},x));});t.appendChild(h);
 R.findings.forEach(function(f){const tr=el('tr',{'class':'finding'});tr.appendChild(el('td',{'class':'sev-'+f.severity},f.severity));
  tr.appendChild(el('td',{},f.check));tr.appendChild(el('td',{},f.tensor));tr.appendChild(el('td',{},f.message));t.appendChild(tr);});
 fd.appendChild(t);}

const T=R.tensors_numerics.filter(function(t){return t.compared;});
function finiteMax(a){let m=-Infinity;a.forEach(function(x){if(x!==null&&x>m)m=x;});return m;}
const capBase=finiteMax(T.map(function(t){return t.sqnr_db;}).concat(T.map(function(t){return t.expected_sqnr_db;})));
const cap=(capBase===-Infinity?40:capBase+5);
function shown(t){return t.sqnr_db===null?cap:t.sqnr_db;}

// A generic chart: bars or points over categories.
function chart(target, cats, series, yLabel, opts){
  opts=opts||{};
  const W=560,H=opts.height||260,L=52,B=opts.bottom||46,Tp=12,Rt=10;
  const svg=sv('svg',{viewBox:'0 0 '+W+' '+H,role:'img'});
  let lo=Infinity,hi=-Infinity;
  series.forEach(function(s){s.values.forEach(function(x){if(x===null||x===undefined)return;lo=Math.min(lo,x);hi=Math.max(hi,x);});});
  if(opts.zero){lo=Math.min(lo,0);}
  if(lo===Infinity){target.appendChild(el('p',{'class':'muted'},'Nothing to plot (no tensor compared with a source).'));return;}
  if(hi===lo){hi=lo+1;}
  const pad=(hi-lo)*0.08;lo=opts.zero?lo:lo-pad;hi=hi+pad;
  const x=function(i){return L+(W-L-Rt)*(cats.length===1?0.5:(i+0.5)/cats.length);};
  const y=function(val){return Tp+(H-Tp-B)*(1-(val-lo)/(hi-lo));};
  for(let k=0;k<=4;k++){const val=lo+(hi-lo)*k/4;svg.appendChild(sv('line',{x1:L,x2:W-Rt,y1:y(val),y2:y(val),stroke:'#e5e8ee'}));
    svg.appendChild(sv('text',{x:L-6,y:y(val)+4,'text-anchor':'end'},val.toFixed(1)));}
  svg.appendChild(sv('text',{x:12,y:Tp+(H-Tp-B)/2,transform:'rotate(-90 12 '+(Tp+(H-Tp-B)/2)+')','text-anchor':'middle'},yLabel));
  const bw=Math.max(2,(W-L-Rt)/cats.length*0.7/series.length);
  series.forEach(function(s,si){s.values.forEach(function(val,i){if(val===null||val===undefined)return;
    const title=sv('title',{},cats[i]+': '+(s.labels?s.labels[i]:val.toFixed(2)));
    let shape;
    if(s.kind==='bar'){const x0=x(i)-bw*series.length/2+si*bw;shape=sv('rect',{x:x0,y:Math.min(y(val),y(Math.max(lo,0))),width:bw-1,height:Math.abs(y(Math.max(lo,0))-y(val)),fill:s.color});}
    else{shape=sv('circle',{cx:x(i),cy:y(val),r:3.5,fill:s.color});}
    shape.appendChild(title);svg.appendChild(shape);});});
  const step=Math.max(1,Math.ceil(cats.length/(opts.maxLabels||16)));
  cats.forEach(function(c,i){if(i%step)return;const tx=sv('text',{x:x(i),y:H-B+14,'text-anchor':opts.rotate?'end':'middle',transform:opts.rotate?'rotate(-35 '+x(i)+' '+(H-B+14)+')':''},c);svg.appendChild(tx);});
  let lx=L;series.forEach(function(s){svg.appendChild(sv('rect',{x:lx,y:H-12,width:10,height:10,fill:s.color}));svg.appendChild(sv('text',{x:lx+14,y:H-3},s.name));lx+=s.name.length*6.5+34;});
  target.appendChild(svg);
}

// Per layer.
const layers={};T.forEach(function(t){const k=t.layer;(layers[k]=layers[k]||[]).push(t);});
const lk=Object.keys(layers).map(Number).sort(function(a,b){return a-b;});
chart(document.getElementById('plot-layer'),lk.map(function(k){return k<0?'other':'L'+k;}),[
 {name:'mean',kind:'point',color:'#2f6fdb',values:lk.map(function(k){const a=layers[k].map(shown);return a.reduce(function(p,q){return p+q;},0)/a.length;})},
 {name:'fresh NVFP4 (worst)',kind:'point',color:'#8a939f',values:lk.map(function(k){const a=layers[k].filter(function(t){return t.expected_sqnr_db!==null;}).map(function(t){return t.expected_sqnr_db;});return a.length?Math.min.apply(null,a):null;})},
 {name:'worst',kind:'point',color:'#b3261e',values:lk.map(function(k){return Math.min.apply(null,layers[k].map(shown));})}
],'SQNR dB (exact drawn at '+cap.toFixed(1)+')');

// Per kind.
const kinds={};T.forEach(function(t){(kinds[t.kind]=kinds[t.kind]||[]).push(t);});
const kk=Object.keys(kinds).sort();
chart(document.getElementById('plot-kind'),kk,[
 {name:'worst',kind:'bar',color:'#b3261e',values:kk.map(function(k){return Math.min.apply(null,kinds[k].map(shown));})},
 {name:'fresh NVFP4 (worst)',kind:'bar',color:'#8a939f',values:kk.map(function(k){const a=kinds[k].filter(function(t){return t.expected_sqnr_db!==null;}).map(function(t){return t.expected_sqnr_db;});return a.length?Math.min.apply(null,a):null;})}
],'SQNR dB',{rotate:true,bottom:90,height:300,zero:true});

// Block scale histogram, by byte (sign bit and NaN bytes show as their own bars).
const Hs=R.block_scale_histogram;
chart(document.getElementById('plot-scales'),Hs.map(function(h){return h.value===null?'NaN':(h.value===0?'0':(h.value<0?'-':'')+'2^'+(Math.log2(Math.abs(h.value))).toFixed(2).replace(/\.00$/,''));}),[
 {name:'log10(blocks)',kind:'bar',color:'#2f6fdb',values:Hs.map(function(h){return Math.log10(h.count)+0.001;}),labels:Hs.map(function(h){return h.count+' blocks (byte 0x'+h.byte.toString(16)+')';})}
],'log10(blocks)',{rotate:true,bottom:70,zero:true,maxLabels:24});

// Worst tensors, chart and table.
const worst=R.tensors_numerics.filter(function(t){return t.compared;}).slice(0,20);
chart(document.getElementById('plot-worst'),worst.map(function(t){return t.name.replace(/\.weight(_packed)?$/,'');}),[
 {name:'SQNR',kind:'bar',color:'#b3261e',values:worst.map(shown)},
 {name:'fresh NVFP4',kind:'bar',color:'#8a939f',values:worst.map(function(t){return t.expected_sqnr_db;})}
],'SQNR dB',{rotate:true,bottom:120,height:340,zero:true,maxLabels:20});

const wd=document.getElementById('worst');
const rows=R.tensors_numerics.slice(0,100);
if(!rows.length){wd.appendChild(el('p',{'class':'muted'},'No NVFP4 tensor was measured.'));}
else{const t=el('table',{id:'worst-table'});const h=el('tr');
 [['tensor',''],['source',''],['scales',''],['SQNR dB','num'],['fresh NVFP4 dB','num'],['rel RMS','num'],['max |err|','num'],['exact','num'],['NaN','num'],['Inf','num'],['flag','']].forEach(function(c){h.appendChild(el('th',{'class':c[1]},c[0]));});t.appendChild(h);
 rows.forEach(function(r){const tr=el('tr',{'class':'tensor'+(r.flag?' flagged':''),'data-name':r.name});
  tr.appendChild(el('td',{},r.name));tr.appendChild(el('td',{},r.source_storage||'-'));
  tr.appendChild(el('td',{'class':'method','data-field':'scale_method'},r.scale_method||'-'));
  numCell(tr,'sqnr_db',r.sqnr_db,r.compared?db(r.sqnr_db,r.exact):'-');
  numCell(tr,'expected_sqnr_db',r.expected_sqnr_db,r.compared?db(r.expected_sqnr_db,false):'-');
  numCell(tr,'rel_rms',r.rel_rms,sci(r.rel_rms));numCell(tr,'max_abs_error',r.max_abs_error,sci(r.max_abs_error));
  numCell(tr,'exact_fraction',r.exact_fraction,pct(r.exact_fraction));
  numCell(tr,'nan_values',r.nan_values,String(r.nan_values));numCell(tr,'inf_values',r.inf_values,String(r.inf_values));
  tr.appendChild(el('td',{'class':r.flag?'sev-fail':''},r.flag||''));t.appendChild(tr);});
 wd.appendChild(t);
 if(R.tensors_numerics.length>rows.length)wd.appendChild(el('p',{'class':'muted'},(R.tensors_numerics.length-rows.length)+' more tensors in the JSON report.'));}
document.body.setAttribute('data-rendered','yes');
})();
</script>
</body></html>
)HTML";

}  // namespace

std::string report_to_html(const nlohmann::json& report) {
  const std::string safe = json_for_html_script(report);
  std::string page;
  page.reserve(kHead.size() + safe.size() + kTail.size());
  page.append(kHead).append(safe).append(kTail);
  return page;
}

}  // namespace fp4kit::verify
